"""Checks of the operator files under cluster/: they parse, they agree with serve_config.yaml,
their resources can hold the configured replicas, and every metric they query is one that the
service or Ray 2.60 really exports. Fast: no Ray cluster is started here.

Export naming rules (measured on Ray 2.60 by scraping a local ``ray.init(_metrics_export_port=)``
with a Counter, Gauge and Histogram created in an actor; see docs/operations.md):
  * every name gets the prefix ``ray_``;
  * a Counter gets the suffix ``_total`` (a name that already ends in ``_total`` keeps one);
  * a Gauge is exported as is;
  * a Histogram is exported as ``_bucket`` (with ``le``), ``_sum`` and ``_count``.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
SERVE_CONFIG = ROOT / "serve_config.yaml"
RAYSERVICE = CLUSTER / "kuberay" / "rayservice.yaml"
PVC = CLUSTER / "kuberay" / "pvc.yaml"
DATABASE_SECRET = CLUSTER / "kuberay" / "store-database-secret.yaml"
LAUNCHER = CLUSTER / "launcher" / "cluster.yaml"
ALERTS = CLUSTER / "prometheus" / "alerts.yml"
PROMETHEUS = CLUSTER / "prometheus" / "prometheus.yml"
DASHBOARD = CLUSTER / "grafana" / "pose-pipeline-dashboard.json"
METRICS_PY = ROOT / "deployments" / "metrics.py"

# Ray's own metrics that the dashboard and alerts use. Each was seen in a scrape of Ray 2.60
# (a Serve app with two deployments, HTTP 200s and 500s, a replica exception, and a worker
# killed by the memory monitor), except the ray_node_gram_* GPU gauges, which only exist on a
# node with a GPU: those are read from ray/dashboard/modules/reporter/reporter_agent.py
# (values in MiB despite their "bytes" help text).
RAY_BUILTIN_METRICS = {
    # Serve HTTP proxy (ray/serve/_private/proxy.py)
    "ray_serve_num_http_requests_total",            # labels: application, route, method, status_code
    "ray_serve_http_request_latency_ms_bucket",     # labels: application, route, method, status_code
    # Serve replicas (ray/serve/_private/replica.py)
    "ray_serve_deployment_error_counter_total",     # labels: application, deployment, replica, exception_type
    "ray_serve_deployment_replica_starts_total",    # one series per replica, value 1
    "ray_serve_replica_processing_queries",         # requests executing in a replica
    # Serve controller (deployment_state.py, autoscaling)
    "ray_serve_deployment_replica_healthy",         # 1 healthy / 0 unhealthy per replica
    "ray_serve_autoscaling_target_replicas",
    # Serve routers/handles (ray/serve/_private/router.py)
    "ray_serve_deployment_queued_queries",          # requests waiting for a replica
    # Raylet memory monitor: labels Type (MemoryManager.ActorEviction.Total ...), Name
    "ray_memory_manager_worker_eviction_total",
    # Node / process stats from the dashboard agent (reporter_agent.py)
    "ray_component_rss_bytes",                      # label Component="ray::ServeReplica:<app>:<dep>"
    "ray_node_gram_used",                           # MiB, per GPU (labels ip, GpuIndex, ...)
    "ray_node_gram_available",                      # MiB
}

SECONDS = re.compile(r"^\d+$")


# ---- helpers ----------------------------------------------------------------------------------


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def serve_config() -> dict:
    return load_yaml(SERVE_CONFIG)


def deployments_by_name() -> dict[str, dict]:
    (app,) = [a for a in serve_config()["applications"] if a["name"] == "pose"]
    return {d["name"]: d for d in app["deployments"]}


def rayservice() -> dict:
    return load_yaml(RAYSERVICE)


def k8s_quantity(value) -> float:
    """Kubernetes resource quantity (\"8\", \"500m\", \"56Gi\", \"1G\") as a number."""
    s = str(value)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "m": 1e-3}
    for unit, factor in units.items():
        if s.endswith(unit):
            return float(s[: -len(unit)]) * factor
    return float(s)


def declared_metrics(source: str) -> dict[str, str]:
    """Names passed to Counter/Gauge/Histogram in deployments/metrics.py, read with ast."""
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("Counter", "Gauge", "Histogram"):
            name = node.args[0] if node.args else next(k.value for k in node.keywords if k.arg == "name")
            assert isinstance(name, ast.Constant) and isinstance(name.value, str), ast.dump(node)
            found[name.value] = node.func.id
    return found


def exported_names(name: str, kind: str) -> set[str]:
    """The names Ray 2.60 exports for one metric (rules measured, see the module docstring)."""
    base = "ray_" + name
    if kind == "Counter":
        return {base if base.endswith("_total") else base + "_total"}
    if kind == "Histogram":
        return {base + "_bucket", base + "_sum", base + "_count"}
    return {base}


def service_exports() -> set[str]:
    names: set[str] = set()
    for name, kind in declared_metrics(METRICS_PY.read_text()).items():
        names |= exported_names(name, kind)
    return names


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_METRIC = re.compile(r"\b(ray_[A-Za-z0-9_]+)\b")


def metric_names_in(expr: str) -> set[str]:
    """Metric names (all of ours start with ray_) in a PromQL expression, outside string literals."""
    return set(_METRIC.findall(_STRING.sub('""', expr)))


def unknown_metrics(expr: str) -> set[str]:
    return metric_names_in(expr) - service_exports() - RAY_BUILTIN_METRICS


def alert_rules() -> list[dict]:
    return [r for g in load_yaml(ALERTS)["groups"] for r in g["rules"]]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_targets() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard()["panels"] if p["type"] != "row" for t in p["targets"]]


# ---- everything parses ------------------------------------------------------------------------


CLUSTER_FILES = sorted(p for p in CLUSTER.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))


def test_cluster_has_the_expected_files():
    for path in (RAYSERVICE, PVC, DATABASE_SECRET, LAUNCHER, ALERTS, PROMETHEUS, DASHBOARD,
                 CLUSTER / "docker" / "cpu.Dockerfile"):
        assert path.is_file(), path


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: str(p.relative_to(CLUSTER)))
def test_every_yaml_and_json_file_parses(path):
    if path.suffix == ".json":
        assert json.loads(path.read_text())
    else:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs, f"{path} is empty"


# ---- RayService -------------------------------------------------------------------------------


def test_rayservice_is_a_kuberay_v1_rayservice():
    rs = rayservice()
    assert rs["apiVersion"] == "ray.io/v1"
    assert rs["kind"] == "RayService"
    spec = rs["spec"]
    assert isinstance(spec["serveConfigV2"], str), "serveConfigV2 is a YAML string, not a mapping"
    cluster = spec["rayClusterConfig"]
    assert cluster["rayVersion"].startswith("2.60")
    assert cluster["authOptions"]["mode"] in ("token", "disabled")
    assert set(spec) <= {"serveConfigV2", "rayClusterConfig", "excludeHeadPodFromServeSvc", "upgradeStrategy",
                         "serveService", "rayClusterDeletionDelaySeconds", "suspend", "managedBy"}
    assert spec["upgradeStrategy"]["type"] in ("NewCluster", "NewClusterWithIncrementalUpgrade", "None")
    for group in cluster["workerGroupSpecs"]:
        assert {"groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"} <= set(group)
        assert group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]
        assert all(isinstance(v, str) for v in group["rayStartParams"].values()), "rayStartParams values are strings"
    assert all(isinstance(v, str) for v in cluster["headGroupSpec"]["rayStartParams"].values())


def test_rayservice_serve_config_equals_serve_config_yaml():
    # No deliberate difference: the RayService embeds the whole serve_config.yaml (proxy_location,
    # http_options, logging_config, applications). Compared as parsed structures, so comments and
    # formatting may differ.
    embedded = yaml.safe_load(rayservice()["spec"]["serveConfigV2"])
    expected = serve_config()
    assert embedded["applications"] == expected["applications"]
    assert embedded == expected


def test_comparison_detects_a_changed_value():
    embedded = yaml.safe_load(rayservice()["spec"]["serveConfigV2"])
    embedded["applications"][0]["deployments"][0]["ray_actor_options"]["num_cpus"] = 99
    assert embedded["applications"] != serve_config()["applications"]


def test_head_takes_no_replicas():
    head = rayservice()["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"


def test_store_root_is_the_shared_volume_on_every_pod():
    (app,) = serve_config()["applications"]
    root = app["args"]["settings"]["store"]["root"]
    pvc = load_yaml(PVC)
    assert pvc["kind"] == "PersistentVolumeClaim" and "ReadWriteMany" in pvc["spec"]["accessModes"]
    cluster = rayservice()["spec"]["rayClusterConfig"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        pod = group["template"]["spec"]
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                  for v in pod["volumes"] if "persistentVolumeClaim" in v}
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        assert claims.get(mounts.get(root)) == pvc["metadata"]["name"], group.get("groupName", "head")


def test_every_ray_container_reads_the_store_database_from_the_secret():
    # Two Ingress replicas share job records only through PostgreSQL (store.database); the
    # connection string, a password, comes from a Secret, never from serveConfigV2.
    secret = load_yaml(DATABASE_SECRET)
    assert (secret["apiVersion"], secret["kind"]) == ("v1", "Secret")
    (key,) = secret["stringData"]
    assert secret["stringData"][key].startswith("postgresql://")
    cluster = rayservice()["spec"]["rayClusterConfig"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        env = {e["name"]: e for e in group["template"]["spec"]["containers"][0].get("env", [])}
        variable = env.get("POSE_PIPELINE_STORE__DATABASE")
        assert variable is not None, group.get("groupName", "head")
        assert variable["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": key}
    (app,) = serve_config()["applications"]
    assert "database" not in app["args"]["settings"]["store"], "the password would show in serveConfigV2"
    assert deployments_by_name()["Ingress"]["num_replicas"] > 1


def test_the_variable_names_the_store_database_setting():
    from pose_pipeline.config import Settings

    dsn = "postgresql://pose:x@db:5432/pose"
    assert Settings.load(env={"POSE_PIPELINE_STORE__DATABASE": dsn}).store.database == dsn


def test_the_images_install_the_postgres_driver():
    for name in ("cpu.Dockerfile", "gpu.Dockerfile"):
        text = (CLUSTER / "docker" / name).read_text()
        assert re.search(r"pip install (-e )?\"\.\[postgres\]\"", text), name


def test_every_ray_container_has_probes_and_a_metrics_port():
    cluster = rayservice()["spec"]["rayClusterConfig"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        container = group["template"]["spec"]["containers"][0]
        assert "readinessProbe" in container and "livenessProbe" in container
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert str(ports["metrics"]) == group["rayStartParams"]["metrics-export-port"]
        res = container["resources"]
        assert res["requests"] == res["limits"], "limit = request: no kubelet OOM kill for overcommit"


def _group(name: str) -> dict:
    (group,) = [g for g in rayservice()["spec"]["rayClusterConfig"]["workerGroupSpecs"] if g["groupName"] == name]
    return group


def _ray_capacity(group: dict) -> dict[str, float]:
    """What Ray schedules on one pod: rayStartParams where given, else the container's limits."""
    params = group["rayStartParams"]
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    return {
        "CPU": float(params.get("num-cpus", k8s_quantity(limits["cpu"]))),
        "GPU": float(params.get("num-gpus", k8s_quantity(limits.get("nvidia.com/gpu", 0)))),
        "memory": float(params.get("memory", k8s_quantity(limits["memory"]))),
        "object_store": float(params.get("object-store-memory", 0)),
        "pod_memory": k8s_quantity(limits["memory"]),
        "pod_cpu": k8s_quantity(limits["cpu"]),
    }


def _needs(dep: dict) -> dict[str, float]:
    opts = dep["ray_actor_options"]
    return {"CPU": opts.get("num_cpus", 1), "GPU": opts.get("num_gpus", 0), "memory": opts.get("memory", 0)}


def _replicas(dep: dict, which: str) -> int:
    auto = dep.get("autoscaling_config")
    if auto:
        return auto["min_replicas" if which == "min" else "max_replicas"]
    return dep["num_replicas"]


def test_a_gpu_pod_holds_two_tracking_replicas_and_nothing_else():
    tracking = deployments_by_name()["Tracking"]
    need = _needs(tracking)
    cap = _ray_capacity(_group("gpu"))
    per_pod = int(cap["GPU"] / need["GPU"])
    assert per_pod >= 2, "one GPU must hold two 0.5-GPU Tracking replicas"
    assert cap["CPU"] >= per_pod * need["CPU"]
    assert cap["memory"] >= per_pod * need["memory"]
    # Pod memory covers the replicas' logical memory plus the object store.
    assert cap["pod_memory"] >= cap["memory"] + cap["object_store"]
    assert cap["pod_cpu"] >= cap["CPU"]
    # No CPU deployment fits in what the Tracking replicas leave: GPU nodes stay for Tracking.
    left_cpu = cap["CPU"] - per_pod * need["CPU"]
    for name, dep in deployments_by_name().items():
        if name != "Tracking":
            assert _needs(dep)["CPU"] > left_cpu, f"{name} could be scheduled on a GPU pod"
    # The group can reach Tracking's min and max replicas.
    group = _group("gpu")
    assert group["minReplicas"] * per_pod >= _replicas(tracking, "min")
    assert group["maxReplicas"] * per_pod >= _replicas(tracking, "max")
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert k8s_quantity(limits["nvidia.com/gpu"]) == cap["GPU"]


def test_cpu_pods_hold_ingress_decode_and_aggregation():
    deps = deployments_by_name()
    cpu_deps = [d for n, d in deps.items() if n != "Tracking"]
    cap = _ray_capacity(_group("cpu"))
    assert cap["GPU"] == 0
    assert cap["pod_memory"] >= cap["memory"] + cap["object_store"]
    # The minimum replicas of all CPU deployments fit in the group's minimum pods ...
    min_cpu = sum(_needs(d)["CPU"] * _replicas(d, "min") for d in cpu_deps)
    min_mem = sum(_needs(d)["memory"] * _replicas(d, "min") for d in cpu_deps)
    group = _group("cpu")
    assert min_cpu <= group["minReplicas"] * cap["CPU"]
    assert min_mem <= group["minReplicas"] * cap["memory"]
    # ... each single replica fits in one pod, and the maxima fit in the group's maximum.
    for d in cpu_deps:
        assert _needs(d)["CPU"] <= cap["CPU"] and _needs(d)["memory"] <= cap["memory"]
    max_cpu = sum(_needs(d)["CPU"] * _replicas(d, "max") for d in cpu_deps)
    max_mem = sum(_needs(d)["memory"] * _replicas(d, "max") for d in cpu_deps)
    assert max_cpu <= group["maxReplicas"] * cap["CPU"]
    assert max_mem <= group["maxReplicas"] * cap["memory"]


def test_launcher_config_is_valid_and_matches_the_replicas():
    from ray.autoscaler._private.util import prepare_config, validate_config  # schema check only

    cfg = load_yaml(LAUNCHER)
    validate_config(prepare_config(cfg))
    types = cfg["available_node_types"]
    assert types[cfg["head_node_type"]]["resources"]["CPU"] == 0
    tracking = _needs(deployments_by_name()["Tracking"])
    gpu = types["gpu_worker"]["resources"]
    per_node = int(gpu["GPU"] / tracking["GPU"])
    assert per_node >= 2 and gpu["CPU"] >= per_node * tracking["CPU"] and gpu["memory"] >= per_node * tracking["memory"]
    cpu = types["cpu_worker"]["resources"]
    for name, dep in deployments_by_name().items():
        if name != "Tracking":
            assert _needs(dep)["CPU"] <= cpu["CPU"] and _needs(dep)["memory"] <= cpu["memory"]
    assert any("pip install" in c for c in cfg["setup_commands"])


def test_cpu_dockerfile_runs_the_service_with_cpu_torch():
    text = (CLUSTER / "docker" / "cpu.Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", text, re.M)
    assert "download.pytorch.org/whl/cpu" in text
    assert re.search(r'^CMD \["pose-pipeline", "serve"\]', text, re.M)


# ---- metric names -----------------------------------------------------------------------------


def test_metric_declarations_are_read_from_the_source():
    declared = declared_metrics(METRICS_PY.read_text())
    assert declared.get("pose_frames_processed") == "Counter"
    assert declared.get("pose_jobs") == "Gauge"
    assert declared.get("pose_job_duration_seconds") == "Histogram"


def test_export_naming_rules():
    assert exported_names("pose_frames_processed", "Counter") == {"ray_pose_frames_processed_total"}
    assert exported_names("x_total", "Counter") == {"ray_x_total"}
    assert exported_names("pose_jobs", "Gauge") == {"ray_pose_jobs"}
    assert exported_names("h", "Histogram") == {"ray_h_bucket", "ray_h_sum", "ray_h_count"}


def test_the_metric_check_rejects_wrong_names():
    assert unknown_metrics('sum(rate(ray_pose_frames_processed_total{stage="x"}[5m]))') == set()
    # Counter without _total, a histogram without _bucket, a typo: all rejected.
    assert unknown_metrics("rate(ray_pose_frames_processed[5m])") == {"ray_pose_frames_processed"}
    assert unknown_metrics("ray_pose_chunk_latency_seconds") == {"ray_pose_chunk_latency_seconds"}
    assert unknown_metrics("ray_serve_num_http_request_total") == {"ray_serve_num_http_request_total"}
    # Label values are not metric names.
    assert metric_names_in('ray_component_rss_bytes{Component=~"ray_fake.*"}') == {"ray_component_rss_bytes"}


def test_alert_rules_use_only_exported_metrics():
    for rule in alert_rules():
        names = metric_names_in(rule["expr"])
        assert names, f"{rule['alert']} queries no metric"
        assert unknown_metrics(rule["expr"]) == set(), rule["alert"]


def test_dashboard_uses_only_exported_metrics():
    for title, expr in dashboard_targets():
        assert metric_names_in(expr), f"panel {title!r} queries no metric"
        assert unknown_metrics(expr) == set(), title


def test_every_service_metric_is_on_the_dashboard():
    used = set().union(*(metric_names_in(e) for _, e in dashboard_targets()))
    for name, kind in declared_metrics(METRICS_PY.read_text()).items():
        assert exported_names(name, kind) & used, f"{name} is exported but not shown"


def test_builtin_list_is_all_used():
    used = set().union(*(metric_names_in(e) for _, e in dashboard_targets()),
                       *(metric_names_in(r["expr"]) for r in alert_rules()))
    assert RAY_BUILTIN_METRICS <= used, RAY_BUILTIN_METRICS - used


# ---- alert rules ------------------------------------------------------------------------------


def test_alert_rules_are_well_formed():
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and len(rule["annotations"]["description"]) > 80
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"])
    # The topics the operators asked for are all covered.
    text = " ".join(r["expr"] for r in rules)
    for metric in ("ray_pose_jobs_finished_total", "ray_pose_oom_events_total",
                   "ray_memory_manager_worker_eviction_total",
                   "ray_serve_deployment_replica_starts_total", "ray_pose_frames_processed_total",
                   "ray_pose_gpu_memory_peak_bytes"):
        assert metric in text, metric


def _tracking_gpu_fraction() -> float:
    return float(deployments_by_name()["Tracking"]["ray_actor_options"]["num_gpus"])


def test_gpu_cap_in_alerts_and_dashboard_is_the_configured_fraction():
    (rule,) = [r for r in alert_rules() if r["alert"] == "PoseGpuMemoryNearCap"]
    fractions = re.findall(r"\(([0-9.]+) \* 1048576 \*", rule["expr"])
    assert fractions and all(float(f) == _tracking_gpu_fraction() for f in fractions)
    (var,) = [v for v in dashboard()["templating"]["list"] if v["name"] == "gpu_fraction"]
    assert float(var["query"]) == _tracking_gpu_fraction()


def test_minimum_replicas_in_the_unhealthy_alert_match_the_config():
    (rule,) = [r for r in alert_rules() if r["alert"] == "PoseReplicaUnhealthy"]
    found = {dep: int(n) for n, dep in re.findall(r'vector\((\d+)\), "deployment", "(\w+)"', rule["expr"])}
    assert found == {name: _replicas(dep, "min") for name, dep in deployments_by_name().items()}


def test_queue_capacity_in_alerts_matches_the_config():
    (rule,) = [r for r in alert_rules() if r["alert"] == "PoseJobQueueNearlyFull"]
    (app,) = serve_config()["applications"]
    assert f"({app['args']['settings']['jobs']['max_queued']} * count(" in rule["expr"]


def test_prometheus_config_uses_ray_service_discovery_and_the_rules():
    cfg = load_yaml(PROMETHEUS)
    assert (PROMETHEUS.parent / cfg["rule_files"][0]).resolve() == ALERTS.resolve()
    (job,) = cfg["scrape_configs"]
    assert job["file_sd_configs"][0]["files"] == ["/tmp/ray/prom_metrics_service_discovery.json"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_promtool_accepts_config_and_rules():
    for args in (["check", "config", str(PROMETHEUS)], ["check", "rules", str(ALERTS)]):
        result = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


# ---- Grafana dashboard ------------------------------------------------------------------------


def test_dashboard_is_a_grafana_dashboard_model():
    d = dashboard()
    for key in ("title", "uid", "schemaVersion", "panels", "templating", "time", "annotations"):
        assert key in d, key
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
    assert d.get("id") is None, "an importable dashboard has no database id"
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in d["panels"]:
        assert p["type"] and p["title"]
        assert set(p["gridPos"]) == {"h", "w", "x", "y"} and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        if p["type"] == "row":  # a row is a section header: no queries of its own
            continue
        assert p["datasource"]["uid"] == "${datasource}"
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))
        for t in p["targets"]:
            assert t["expr"].strip(), p["title"]
            assert t["expr"].count("(") == t["expr"].count(")"), p["title"]


def test_dashboard_panels_do_not_overlap():
    cells: dict[tuple[int, int], str] = {}
    for p in dashboard()["panels"]:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]


def test_dashboard_covers_the_requested_topics():
    exprs = " ".join(e for _, e in dashboard_targets())
    assert "histogram_quantile(0.5" in exprs and "histogram_quantile(0.95" in exprs \
        and "histogram_quantile(0.99" in exprs
    for metric in ("ray_pose_frames_processed_total", "ray_pose_jobs_finished_total", "ray_pose_jobs",
                   "ray_serve_deployment_queued_queries", "ray_pose_gpu_memory_allocated_bytes",
                   "ray_serve_deployment_replica_starts_total", "ray_pose_oom_events_total",
                   "ray_pose_chunk_retries_total", "ray_pose_upload_bytes_total", "ray_pose_result_store_bytes"):
        assert metric in exprs, metric
