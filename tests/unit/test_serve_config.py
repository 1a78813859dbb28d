"""serve_config.yaml (production), serve_config.cpu.yaml (embedded default) and
serve_config.8gb.yaml (one 8 GB GPU) are valid Serve configs whose application builds, and
they describe the same application."""

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from deployments.app import compose
from deployments.cli import ServeConfig
from pose_pipeline.config import Settings

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ["serve_config.yaml", "serve_config.cpu.yaml", "serve_config.8gb.yaml"]
DEPLOYMENTS = {"Ingress", "Decode", "Tracking", "Aggregation"}


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.mark.parametrize("name", CONFIGS)
def test_config_validates_against_rays_schema(name):
    schema = ServeDeploySchema.model_validate(_load(name))
    (app,) = schema.applications
    assert app.import_path == "deployments.app:build_app"
    assert {d.name for d in app.deployments} == DEPLOYMENTS


@pytest.mark.parametrize("name", CONFIGS)
def test_application_builds_with_the_configs_args_and_options(name):
    config = ServeConfig.load(ROOT / name)
    Settings.from_dict(config.args["settings"])  # valid settings, no unknown key
    app = compose(config.args, config.deployments)
    deployments = {d.name: d for d in _deployments(app)}
    assert set(deployments) == DEPLOYMENTS
    for deployment_name, options in config.deployments.items():
        actor_options = options.get("ray_actor_options", {})
        for key, value in actor_options.items():
            assert deployments[deployment_name].ray_actor_options[key] == value


def _deployments(app):
    # An Application wraps the ingress deployment; the others are its bound arguments.
    root = app._bound_deployment
    return [root, *(arg._bound_deployment for arg in root.init_args[1:])]


def test_production_tracking_is_gpu_pinned_and_cpu_config_needs_no_gpu():
    production = {d["name"]: d for d in _load("serve_config.yaml")["applications"][0]["deployments"]}
    cpu = {d["name"]: d for d in _load("serve_config.cpu.yaml")["applications"][0]["deployments"]}
    gpus = production["Tracking"]["ray_actor_options"]["num_gpus"]
    assert 0 < gpus < 1, "tracking replicas share GPUs"
    memory = production["Tracking"]["ray_actor_options"]["memory"]
    limit = _load("serve_config.yaml")["applications"][0]["args"]["settings"]["tracking"]["memory_limit_bytes"]
    assert limit <= memory, "the replica's own limit must not exceed what Ray reserves for it"
    assert all("num_gpus" not in d.get("ray_actor_options", {}) for d in cpu.values())
    assert _load("serve_config.cpu.yaml")["applications"][0]["args"]["settings"]["engine"]["name"] == "blazepose"


def test_build_app_has_the_signature_serve_requires():
    # `serve run`/`serve deploy` refuse a builder that does not take exactly one parameter.
    import inspect

    from deployments.app import build_app

    assert len(inspect.signature(build_app).parameters) == 1
    assert build_app({"settings": {"engine": {"name": "motion"}}}) is not None


def test_the_service_reads_the_settings_file_of_config_and_of_the_variable(tmp_path, monkeypatch):
    # `pose-pipeline --config FILE serve` and `$POSE_PIPELINE_CONFIG`: the file's settings reach
    # the application's deployments; the application's args.settings and the variables win.
    import argparse

    from deployments.cli import use_config_file

    settings_file = tmp_path / "pose.yaml"
    settings_file.write_text("decode: {max_side: 720}\njobs: {max_running: 3}\n")
    monkeypatch.delenv("POSE_PIPELINE_CONFIG", raising=False)
    use_config_file(argparse.Namespace(config=str(settings_file)))
    monkeypatch.setenv("POSE_PIPELINE_JOBS__MAX_RUNNING", "5")
    app = compose({"settings": {"decode": {"fps": 10}}})
    settings = app._bound_deployment.init_args[0]
    assert (settings.decode.max_side, settings.decode.fps, settings.jobs.max_running) == (720, 10, 5)

    monkeypatch.setenv("POSE_PIPELINE_CONFIG", str(settings_file))  # the variable alone: the same
    monkeypatch.delenv("POSE_PIPELINE_JOBS__MAX_RUNNING")
    assert compose({})._bound_deployment.init_args[0].jobs.max_running == 3


def test_8gb_config_gives_one_replica_the_whole_card_and_bf16_backbones():
    config = _load("serve_config.8gb.yaml")
    tracking = {d["name"]: d for d in config["applications"][0]["deployments"]}["Tracking"]
    assert tracking["num_replicas"] == 1 and tracking["ray_actor_options"]["num_gpus"] == 1
    options = config["applications"][0]["args"]["settings"]["engine"]["options"]
    from pose_pipeline.engines.phalp.options import PhalpOptions

    assert PhalpOptions.from_mapping(options).precision == "bf16"
    assert "cuda_memory_fraction" not in options  # a whole GPU: no cap
