"""The service on a cluster of several nodes, on one machine, with real processes killed: a
head node and worker nodes started with ``ray start`` (tests/support/multinode.py), the job
records in a real PostgreSQL server (``store.database``), the files on a folder every node
sees (on one machine, any folder).

- Two ingress replicas share the records: the one that did not run a job adopts it when the
  one that did is killed.
- The tracking replicas run on a worker node (its custom resource ``tracker``); that node's
  raylet is killed in the middle of a job, as when its machine dies. A standby worker node,
  started once the application is up, gives the replacement replicas room (Serve does not
  move running replicas, so they were all on the first worker). The job continues there
  with the identical result; the next job succeeds. How long the client saw no progress is
  printed and written to ``bench/out/multinode.json``.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
import ray

from pose_pipeline.config import StoreSettings
from pose_pipeline.jobs.store import open_store
from support.serve import VIDEO_SIZE

pytestmark = [pytest.mark.serve, pytest.mark.slow]

SIZE = VIDEO_SIZE  # the videos of support.serve.demo_video
CHUNK_FRAMES = 10
CHUNK_TIMEOUT_S = 60
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tmp_module(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("multinode")


@pytest.fixture(scope="module")
def cluster(postgres_server, ray_clusters, serve_tools, tmp_module):
    from support.multinode import MultiNodeCluster

    store = StoreSettings(root=str(tmp_module / "store"), database=postgres_server.new_database())
    ray_clusters.close()  # this process connects to this cluster instead
    cluster = MultiNodeCluster().start()
    try:
        cluster.add_worker("worker-1")
        url = cluster.deploy({"store": store.model_dump(),
                              "decode": {"chunk_bytes": SIZE[0] * SIZE[1] * 3 * CHUNK_FRAMES, "max_side": None},
                              "jobs": {"lease_s": 1.5, "chunk_timeout_s": CHUNK_TIMEOUT_S}},
                             {"Ingress": {"num_replicas": 2}})
        with httpx.Client(base_url=url, timeout=60) as http:
            serve_tools.wait_until(lambda: serve_tools.is_ready(http), 180, 0.25, "the application on the cluster")
            cluster.http, cluster.store = http, store
            yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def long_video(serve_tools, tmp_module) -> Path:
    """30 chunks: a replica or a node is lost after the third or the fifth, the job goes on."""
    return serve_tools.demo_video(tmp_module, "long", duration_s=20)


@pytest.fixture(scope="module")
def long_reference(serve_tools, long_video, tmp_module) -> dict:
    return serve_tools.offline_result(long_video, tmp_module / "long-reference.json")


@pytest.fixture(scope="module")
def video(serve_tools, tmp_module) -> Path:
    return serve_tools.demo_video(tmp_module, "short", duration_s=4)


def _alive_actors(class_name: str) -> dict[str, int]:
    """Actor id -> pid of the live actors whose class name ends with ``class_name``."""
    table = ray._private.state.state.actor_table(None)
    return {actor_id: info["Pid"] for actor_id, info in table.items()
            if info["State"] == "ALIVE" and info["ActorClassName"].endswith(class_name)}


def _job(http: httpx.Client, job_id: str) -> dict:
    return http.get(f"/v1/jobs/{job_id}").json()


class ProgressLog:
    """Polls a job every 0.1 s from a thread: (seconds, frames_done) at each change, and the
    polls that got no answer."""

    def __init__(self, url: str, job_id: str) -> None:
        self.url, self.job_id = url, job_id
        self.changes: list[tuple[float, int]] = []
        self.failed_polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> ProgressLog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as http:
            while not self._stop.is_set():
                try:
                    body = http.get(f"/v1/jobs/{self.job_id}").json()
                    done = body["progress"]["frames_done"]
                    if not self.changes or done != self.changes[-1][1]:
                        self.changes.append((time.monotonic(), done))
                    if body["state"] in ("succeeded", "failed", "cancelled"):
                        return
                except (httpx.HTTPError, KeyError, ValueError):
                    self.failed_polls += 1
                time.sleep(0.1)

    def stall_after(self, moment: float) -> float:
        """The longest time without a change of progress that ends after ``moment``, counted
        from ``moment`` at the earliest: how long the client saw the job stand still."""
        return max(end - max(start, moment) for (start, _), (end, _) in zip(self.changes, self.changes[1:])
                   if end > moment)


def test_ingress_replicas_on_one_database_adopt_each_others_jobs(serve_tools, cluster, long_video, long_reference):
    http = cluster.http
    records = open_store(cluster.store)
    job = serve_tools.submit(http, long_video, name="adopted.mp4")
    serve_tools.wait_until(lambda: _job(http, job["job_id"])["progress"]["chunks_done"] >= 3, 60, 0.05,
                           "three chunks")
    ingresses = _alive_actors("Ingress")
    assert len(ingresses) == 2, ingresses
    owner = records.get(job["job_id"]).owner
    assert owner is not None and owner.removeprefix("ingress-") in ingresses, (owner, ingresses)
    killed = owner.removeprefix("ingress-")
    victim = psutil.Process(ingresses[killed])
    victim.kill()
    victim.wait(10)

    def adopted() -> str | None:
        heir = records.get(job["job_id"]).owner
        return heir if heir not in (None, owner) else None

    heir = serve_tools.wait_until(adopted, 60, 0.05, "another runner to adopt the job").removeprefix("ingress-")
    survivor = next(actor for actor in ingresses if actor != killed)
    assert heir == survivor, "the job was adopted by the restarted replica, not by the other one"
    done = serve_tools.wait_job(http, job["job_id"], timeout_s=180)
    assert done["state"] == "succeeded", done
    assert http.get(f"/v1/jobs/{job['job_id']}/result").json() == long_reference


def test_a_worker_node_lost_mid_job_the_job_continues_on_another_node(serve_tools, cluster, long_video,
                                                                      long_reference, video, tmp_path):
    http = cluster.http
    first = next(node for node in cluster.nodes if node.name == "worker-1")
    trackers = cluster.replicas("Tracking")
    assert len(trackers) == 2 and {cluster.node_of(p.pid).name for p in trackers} == {"worker-1"}
    standby = cluster.add_worker("worker-2")  # room for the replacements

    job = serve_tools.submit(http, long_video, name="node-lost.mp4")
    with ProgressLog(str(http.base_url), job["job_id"]) as progress:
        serve_tools.wait_until(lambda: _job(http, job["job_id"])["progress"]["chunks_done"] >= 5, 60, 0.05,
                               "five chunks")
        killed_at = time.monotonic()
        cluster.kill_raylet(first)
        done = serve_tools.wait_job(http, job["job_id"], timeout_s=240)
    assert done["state"] == "succeeded", done
    assert http.get(f"/v1/jobs/{job['job_id']}/result").json() == long_reference
    stalled_s = progress.stall_after(killed_at)
    retried = sorted(set(cluster.log_lines(job["job_id"], "retried after")))  # each line is in two logs
    # The chunk in flight on the lost node fails with the node's death and is retried on the
    # replacements, well before jobs.chunk_timeout_s would give it up.
    assert not any(line.endswith("after timeout") for line in retried), retried
    assert stalled_s < CHUNK_TIMEOUT_S / 2, (stalled_s, retried)

    replacements = serve_tools.wait_until(lambda: (lambda ps: ps if len(ps) == 2 else None)(
        cluster.replicas("Tracking")), 60, 0.5, "two tracking replicas")
    assert {cluster.node_of(p.pid).name for p in replacements} == {standby.name}
    after = serve_tools.wait_job(http, serve_tools.submit(http, video, name="after.mp4")["job_id"])
    assert after["state"] == "succeeded", after
    figures = {"no_progress_after_raylet_kill_s": round(stalled_s, 2), "retries": done["retries"],
               "failed_status_polls": progress.failed_polls, "retried_after": retried,
               "longest_gap_s": round(max(b[0] - a[0] for a, b in zip(progress.changes, progress.changes[1:])), 2)}
    print(f"\nmulti-node: {figures}")
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "multinode.json").write_text(json.dumps(figures, indent=2))
