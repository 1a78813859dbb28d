"""Host out of memory, case (b): the replica's own guard is off (``tracking.memory_limit_bytes:
null``) and Ray's node memory monitor is what stops a tracking replica that allocates without
bound (fault ``host_oom``: 256 MiB every 50 ms).

The monitor's threshold is computed from the node's usage when the module starts (other tests
and benchmarks share this machine): usage at start + this cluster's own footprint + 2 GiB for
the fault + 1 GiB for what the suite's other worker (pytest -n 2, never a Ray cluster) may take
meanwhile, so the fault allocates a few GiB before the monitor acts, and the node's total use
stays bounded by the threshold (plus the monitor's reaction lag) whatever the fault does.

What Ray 2.60 does here, measured (each job's outcome is printed with ``-s``): the monitor
kills SEVERAL workers at once, chosen by the time since their task started, not the one that
allocated alone: the tracking replica(s), the ingress (which runs the job), the aggregation
replica and the Serve controller, all at the same moment. The proxy answers ``500 Internal
Server Error`` in plain text meanwhile; after 15-20 s a restarted controller has brought back
every replica, and the new ingress adopts the job through its expired lease and continues from
the last committed chunk.

When the runner (the ingress) dies with the workers, the job's record still counts the
attempts (they are written before each one starts), and the runner that adopts the job reads
why its predecessor died from Ray's actor table: the final error is ``out_of_memory`` either way.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from support.serve import VIDEO_SIZE

pytestmark = [pytest.mark.serve, pytest.mark.slow]

APP = "nodeoom"  # not "pose": replica processes of other modules' clusters must not match
SIZE = VIDEO_SIZE  # the videos of support.serve.demo_video
CHUNK_FRAMES = 10
GiB = 2**30
#: What this module's cluster adds to the node once ready (measured: ~2.1 GiB of RSS for GCS,
#: raylet, agents, controller, proxy and four deployments with one tracking replica).
CLUSTER_FOOTPRINT = 2.25 * GiB
#: How much the fault should allocate before the node passes the threshold, at least.
ALLOCATION = (2 + 1) * GiB
#: Below this much headroom at readiness, the monitor would act on other processes' noise.
MIN_HEADROOM = 0.75 * GiB
MAX_THRESHOLD = 0.8
MONITOR_ENV = ("RAY_memory_usage_threshold", "RAY_memory_monitor_refresh_ms")

FAULTS = [
    {"kind": "host_oom", "chunk": 1, "filename": "node-oom-once.mp4", "times": 1},
    {"kind": "host_oom", "chunk": 1, "filename": "node-oom-always.mp4", "times": 3},
]
MAX_CHUNK_RETRIES = 2


def _used_fraction() -> float:
    """Used memory as Ray's monitor computes it: (total - available) / total."""
    memory = psutil.virtual_memory()
    return (memory.total - memory.available) / memory.total


# --- the cluster ------------------------------------------------------------------------------


@dataclass
class Service:
    http: httpx.Client
    cluster: Any  # support.serve.ServeCluster
    threshold: float
    store: Path
    #: Every ray worker process of this cluster seen during the module, for the leak check.
    workers: dict[int, float] = field(default_factory=dict)

    def ray_processes(self) -> list[psutil.Process]:
        """This cluster's processes: all are descendants of this (the driver's) process."""
        found = []
        for proc in psutil.Process().children(recursive=True):
            try:
                cmdline = " ".join(proc.cmdline())
                if "ray" in cmdline:
                    found.append(proc)
                    self.workers.setdefault(proc.pid, proc.create_time())
            except psutil.Error:
                pass
        return found

    def raylet_log(self) -> str:
        path = self.cluster.serve_logs.parent / "raylet.out"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="module")
def tmp_module(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("node_oom")


@pytest.fixture(scope="module")
def service(ray_clusters, serve_tools, tmp_module):
    total = psutil.virtual_memory().total
    at_start = _used_fraction()
    threshold = round(at_start + (CLUSTER_FOOTPRINT + ALLOCATION) / total, 3)
    if threshold > MAX_THRESHOLD:
        pytest.skip(f"the node is already {at_start:.0%} used: a threshold of {threshold:.0%} is not safe here")
    env = {"RAY_memory_usage_threshold": str(threshold), "RAY_memory_monitor_refresh_ms": "100"}
    store = tmp_module / "store"
    settings = {
        "decode": {"chunk_bytes": SIZE[0] * SIZE[1] * 3 * CHUNK_FRAMES, "max_side": None},
        # A deadline long enough that the node monitor, not the chunk timeout, ends the chunk.
        "jobs": {"chunk_timeout_s": 60, "max_chunk_retries": MAX_CHUNK_RETRIES, "lease_s": 3},
        "tracking": {"memory_limit_bytes": None},
        "engine": {"name": "faults", "options": {"engine": "motion", "faults": FAULTS,
                                                 "state_dir": str(tmp_module / "faults")}},
        "store": {"root": str(store)},
    }
    checked = serve_tools.CHECKED
    # The tracking replica answers no health check while the fault allocates (it holds the
    # GIL): with the suite's other worker busy on both cores, reaching the threshold took
    # longer than the usual 5 s timeout and Serve replaced the replica first (seen in full
    # runs). A long timeout leaves the stopping to the memory monitor, which this is about.
    tracking = {**checked, "health_check_timeout_s": 60, "num_replicas": 1,
                "ray_actor_options": {"num_cpus": 0.05, "num_gpus": 0.5}}
    deployments = {"Tracking": tracking,
                   "Decode": checked, "Aggregation": checked, "Ingress": checked}
    cluster = ray_clusters.own(num_gpus=1, env=env)
    service = None
    try:
        cluster.start()
        service = Service(httpx.Client(base_url=cluster.url(), timeout=60), cluster, threshold, store)
        # The variables must reach the raylet (they are read when it starts).
        raylets = [p for p in service.ray_processes() if "raylet" in p.name()]
        assert raylets and all(p.environ().get(k) == v for p in raylets for k, v in env.items()), \
            "the memory monitor settings did not reach the raylet"
        cluster.deploy(APP, settings, deployments)
        serve_tools.wait_until(lambda: _ready(service.http), 150, 0.25, "the application")
        service.ray_processes()
        headroom = threshold * total - (total - psutil.virtual_memory().available)
        if headroom < MIN_HEADROOM:
            pytest.skip(f"only {headroom / GiB:.2f} GiB below the memory threshold once the cluster is up "
                        "(other processes on this machine grew): the monitor would kill at random")
        yield service
    finally:
        if service is not None:
            service.ray_processes()
            service.http.close()
        cluster.stop()
    # After the module: no variable left behind, no worker left alive (their memory is back).
    assert not [k for k in MONITOR_ENV if k in os.environ], "serve_tools.ServeCluster.stop left the monitor settings"
    if service is not None:
        serve_tools.wait_until(lambda: not _alive(service.workers), 30, 0.5, "this cluster's processes to exit")


def _alive(seen: dict[int, float]) -> list[int]:
    alive = []
    for pid, created in seen.items():
        try:
            if psutil.Process(pid).create_time() == created:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _ready(http: httpx.Client) -> bool:
    try:
        return http.get("/readyz", timeout=15).status_code == 200
    except httpx.TransportError:
        return False


# --- inputs and the reference -----------------------------------------------------------------


@pytest.fixture(scope="module")
def video(serve_tools, tmp_module) -> Path:
    return serve_tools.demo_video(tmp_module, "people", duration_s=4)


@pytest.fixture(scope="module")
def reference(serve_tools, video, tmp_module) -> dict:
    """The offline CLI's result for the same video, with the same engine (as in test_faults)."""
    return serve_tools.offline_result(video, tmp_module / "reference.json")


# --- running a job through the outage ---------------------------------------------------------


@dataclass
class Outcome:
    job: dict
    seconds: float
    #: What the client saw while polling: (seconds, status or exception name, state, chunks_done).
    seen: list[tuple]
    #: The monitor's kills during the job: one list of killed task names per kill event.
    kills: list[list[str]]
    killed_pids: set[int]

    def report(self) -> str:
        return (f"job ended {self.job.get('state')} after {self.seconds:.1f} s, retries={self.job.get('retries')}, "
                f"error={self.job.get('error')}; monitor kills: {self.kills}; client saw: {self.seen}")


_KILL = re.compile(r"Selected to kill: \(.*?task name=([^,]+), .*?pid=(\d+)")


def _kills(raylet_log: str) -> tuple[list[list[str]], set[int]]:
    """The raylet's memory-monitor kill events: 'Killing N worker(s)' then one
    'Selected to kill' line per worker."""
    events: list[list[str]] = []
    pids: set[int] = set()
    for line in raylet_log.splitlines():
        if "Killing" in line and "worker(s), kill details" in line:
            events.append([])
        elif line.startswith("Selected to kill") and events:
            match = _KILL.search(line)
            if match:
                events[-1].append(":".join(match.group(1).split(":")[-2:]))
                pids.add(int(match.group(2)))
    return events, pids


def _run_through_outage(serve_tools, service: Service, video: Path, name: str, timeout_s: float) -> Outcome:
    """Submit, then poll until the job ends, through a dead ingress (transport errors) and the
    proxy's plain-text 500s while no ingress replica is up."""
    serve_tools.wait_until(lambda: _ready(service.http), 120, 0.25, "every deployment to be ready")
    log_before = len(service.raylet_log())
    started = time.monotonic()
    job_id = serve_tools.submit(service.http, video, name=name)["job_id"]
    seen: list[tuple] = []
    body: dict = {}
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        service.ray_processes()
        try:
            response = service.http.get(f"/v1/jobs/{job_id}", timeout=10)
            body = response.json() if response.headers.get("content-type", "").startswith("application/json") \
                else {}
            what = (response.status_code, body.get("state"), (body.get("progress") or {}).get("chunks_done"))
        except httpx.TransportError as exc:
            body, what = {}, (type(exc).__name__, None, None)
        if not seen or seen[-1][1:] != what:
            seen.append((round(time.monotonic() - started, 1), *what))
        if body.get("state") in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"job {job_id} did not end within {timeout_s:.0f} s; client saw {seen}")
    kills, pids = _kills(service.raylet_log()[log_before:])
    outcome = Outcome(body, time.monotonic() - started, seen, kills, pids)
    print(outcome.report())
    return outcome


@pytest.fixture(scope="module")
def once(serve_tools, service, video) -> Outcome:
    return _run_through_outage(serve_tools, service, video, "node-oom-once.mp4", timeout_s=150)


@pytest.fixture(scope="module")
def always(serve_tools, service, video, once) -> Outcome:  # after "once": one outage at a time
    return _run_through_outage(serve_tools, service, video, "node-oom-always.mp4", timeout_s=240)


def _result(service: Service, job_id: str) -> dict:
    return service.http.get(f"/v1/jobs/{job_id}/result").json()


def _chunks_never_went_back(outcome: Outcome) -> bool:
    done = [chunks for _, status, _, chunks in outcome.seen if status == 200 and chunks is not None]
    return done == sorted(done)


# --- the tests --------------------------------------------------------------------------------


def test_node_oom_once_resumes_with_identical_result(service, once, reference):
    assert once.kills, f"Ray's memory monitor killed nothing: {once.report()}"
    assert any(":Tracking." in name for event in once.kills for name in event), once.report()
    assert once.job["state"] == "succeeded", once.report()
    assert _chunks_never_went_back(once), once.report()  # continued from its last committed chunk
    assert _result(service, once.job["job_id"]) == reference


def test_node_oom_once_counts_the_retry(once):
    assert once.job["retries"] >= 1, once.report()


def test_node_oom_always_ends_and_any_failure_is_out_of_memory(service, always, reference):
    # What holds whatever the monitor kills: the job ends, and a failure is typed.
    assert always.kills, f"Ray's memory monitor killed nothing: {always.report()}"
    job = always.job
    if job["state"] == "failed":
        error = job["error"]
        assert error["code"] == "out_of_memory", always.report()
        assert error["kind"] == "node"
        assert all(word in error["message"] for word in ("max_side", "decode.chunk_bytes", "memory")), error
    else:
        assert job["state"] == "succeeded", always.report()
        assert _result(service, job["job_id"]) == reference


def test_node_oom_always_fails_past_the_retry_bound(always):
    job = always.job
    assert job["state"] == "failed", always.report()
    error = job["error"]  # attempts are counted in the store, across runners that died too
    assert error["code"] == "out_of_memory" and error["kind"] == "node", always.report()
    assert error["attempts"] == MAX_CHUNK_RETRIES + 1 and error["chunk"] == 1, always.report()
    assert all(word in error["message"] for word in ("max_side", "decode.chunk_bytes", "memory")), error
