"""The package's shape: its declared public API, and the light imports of what clients run
(each in a fresh process, whose ``sys.modules`` is then read)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import pose_pipeline

PUBLIC = ["Client", "EngineRegistry", "JobOptions", "PipelineError", "RequestError", "ResultFiles", "RetryableError",
          "ServiceFailure", "Settings", "VideoError", "read_result", "track_file"]
#: What a client, the CLI's help and its remote commands must not load: the decoding and
#: numerical stack, and the job store's database.
HEAVY = {"av", "numpy", "scipy", "sqlite3", "torch", "ray"}
PACKAGE = Path(pose_pipeline.__file__).parent


def test_public_api_is_declared_and_each_name_is_the_defining_module_s():
    assert pose_pipeline.__all__ == PUBLIC == sorted(pose_pipeline._EXPORTS)
    from pose_pipeline.client import Client
    from pose_pipeline.config import Settings
    from pose_pipeline.errors import PipelineError
    from pose_pipeline.pipeline import track_file

    assert (pose_pipeline.Client, pose_pipeline.Settings, pose_pipeline.PipelineError,
            pose_pipeline.track_file) == (Client, Settings, PipelineError, track_file)
    for name in PUBLIC:
        assert getattr(pose_pipeline, name).__module__.startswith("pose_pipeline.")
    with pytest.raises(AttributeError):
        pose_pipeline.NoSuchThing  # noqa: B018


def loaded_after(code: str) -> set[str]:
    """Top-level packages loaded by a fresh interpreter after ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip(), done.stderr[-2000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def run_cli(*args: str) -> str:
    # A closed port: the remote commands fail at once, after importing what they need.
    return f"""
from pose_pipeline.cli.main import main
try:
    main({list(args)!r})
except SystemExit:
    pass
"""


@pytest.mark.parametrize("code", [
    "import pose_pipeline",
    "import pose_pipeline.client",
    "from pose_pipeline import Client, JobOptions, Settings, PipelineError",
    "from pose_pipeline.video.types import VideoProbe, DecodeOptions",
    run_cli("--help"),
    run_cli("jobs", "--url", "http://127.0.0.1:9"),
    run_cli("submit", "no-such-video.mp4", "--url", "http://127.0.0.1:9"),
], ids=["package", "client", "public-names", "video-types", "cli-help", "cli-jobs", "cli-submit"])
def test_clients_load_no_decoding_numerics_or_database(code):
    assert not loaded_after(code) & HEAVY


def test_the_heavy_set_is_really_seen():
    """The probe above can fail: decoding a video does load PyAV and numpy."""
    assert {"av", "numpy"} <= loaded_after("from pose_pipeline.video import probe")


def test_at_most_eight_top_level_modules_and_every_package_says_its_job():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= 8, modules
    for init in PACKAGE.rglob("__init__.py"):
        text = init.read_text()
        assert text.startswith('"""') and len(text.split('"""')[1].strip()) > 20, init
