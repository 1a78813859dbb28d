"""Starting the real service on a local Ray cluster for tests and finding its processes (the
``serve_tools``, ``ray_clusters`` and ``shared_cluster`` fixtures); with the HTTP helpers of
``support.api``.

A pytest process connects to one Ray cluster at a time (``Clusters``). The modules that deploy
their applications on one plain node share one cluster, each under its own application names,
deleted after the module: starting and stopping a cluster costs 10-15 s on two cores. A module
that needs a cluster of its own (other Ray settings, several nodes, a ``pose-pipeline serve``)
stops the shared one first. Ports are picked free, so that test modules and benchmarks on the
same machine do not collide.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import psutil
import ray
from ray import serve

from deployments.app import compose
from pose_pipeline.jobs.messages import ChunkTask
from pose_pipeline.options import JobOptions
from pose_pipeline.assets import synthetic
from pose_pipeline.jobs.store import JobRecord, JobState, LocalJobStore, new_job_id
from pose_pipeline.video import DecodeCursor, DecodeOptions, probe

from .api import is_ready, offline_result, part_files, spool_files, submit, wait_job, wait_until

__all__ = ["CHECKED", "VIDEO_SIZE", "Clusters", "ServeCluster", "demo_video", "first_chunk_task", "free_port",
           "is_ready", "job_store", "offline_result", "part_files", "replica_processes", "spool_files", "submit",
           "wait_job", "wait_until"]

#: The size of the service tests' videos: small, so that kills fall between chunks of a job
#: that lasts (a 20 s video is 30 chunks with their settings).
VIDEO_SIZE = (320, 180)


def demo_video(folder: Path, name: str, duration_s: float) -> Path:
    """People walking (``synthetic.demo_scene``), 15 fps, ``VIDEO_SIZE``: ``folder/name.mp4``."""
    scene = synthetic.demo_scene(duration_s=duration_s, size=VIDEO_SIZE, fps=15)
    return synthetic.write_video(folder / f"{name}.mp4", scene)


#: Ray 2.60 asks local clusters for a token: the tests' clusters are local (docs/operations.md).
#: Ray starts its workers at niceness 15; the suite's other worker (pytest -n 2, no cluster) runs
#: at 0, and on two cores it starved the replicas past their leases and metric exports
#: (measured: test_metrics failed so); at 0 they share the cores evenly.
CLUSTER_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_worker_niceness": "0"}

# Small CPU shares so that every replica of every app fits on a 2-core machine; JSON logs
# as in serve_config.yaml, so that job ids are fields of each line. A replica stopped (an app
# deleted, a cluster shut down, an unhealthy replica replaced) waits 2 s, then its requests'
# end for up to 20 s, by Serve's defaults: here 0.1 s and 2 s (the tests' requests have ended
# or are meant to be cut).
QUICK_STOP = {"graceful_shutdown_wait_loop_s": 0.1, "graceful_shutdown_timeout_s": 2}
SMALL = {"ray_actor_options": {"num_cpus": 0.05}, "logging_config": {"encoding": "JSON"}, **QUICK_STOP}

#: Serve finds a dead replica by its failed health check, every 10 s by default: every 1 s with
#: these options, for the tests that kill replicas and wait for their replacement, not its finding.
CHECKED = {"health_check_period_s": 1, "health_check_timeout_s": 5}


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServeCluster:
    def __init__(self, num_gpus: float = 1, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.num_gpus = num_gpus
        self.env = {**CLUSTER_ENV, **(env or {})}
        self.apps: list[str] = []  # deployed, in order

    def start(self) -> ServeCluster:
        self._saved_env = {key: os.environ.get(key) for key in self.env}
        os.environ.update(self.env)  # before ray.init: the cluster's processes inherit them
        ray.init(num_cpus=2, num_gpus=self.num_gpus, include_dashboard=False,
                 _metrics_export_port=self.metrics_port, logging_level="ERROR",
                 log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": self.port})
        # This cluster's own folder: /tmp/ray/session_latest may be another cluster's.
        self.serve_logs = Path(ray._private.worker._global_node.get_logs_dir_path()) / "serve"
        return self

    def deploy(self, name: str, settings: dict[str, Any], deployments: dict[str, dict] | None = None,
               route_prefix: str = "/") -> str:
        """Deploy the application; the engine is motion unless ``settings`` names one."""
        settings = {"engine": {"name": "motion"}, **settings}
        options = {d: {**SMALL, **(deployments or {}).get(d, {})}
                   for d in ("Ingress", "Decode", "Tracking", "Aggregation")}
        serve.run(compose({"settings": settings}, options), name=name, route_prefix=route_prefix,
                  blocking=False)
        self.apps.append(name)
        return self.url(route_prefix)

    def delete(self, names: list[str]) -> None:
        """Delete these applications; returns once their replicas are gone."""
        for name in names:
            serve.delete(name)
            self.apps.remove(name)

    def url(self, route_prefix: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{route_prefix.rstrip('/')}"

    def stop(self) -> None:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            for key, value in getattr(self, "_saved_env", {}).items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


class Clusters:
    """This process's Ray clusters, one at a time: ``shared()`` starts or returns the cluster
    that the modules deploying on one plain node use in turn; ``own(...)`` stops it and gives a
    cluster of the module's own (not started); ``close()`` stops the shared one."""

    def __init__(self) -> None:
        self._shared: ServeCluster | None = None

    def shared(self) -> ServeCluster:
        if self._shared is None:
            self._shared = ServeCluster(num_gpus=1).start()
        return self._shared

    def own(self, num_gpus: float = 1, env: dict[str, str] | None = None) -> ServeCluster:
        self.close()
        return ServeCluster(num_gpus=num_gpus, env=env)

    def close(self) -> None:
        if self._shared is not None:
            shared, self._shared = self._shared, None
            shared.stop()


def replica_processes(app: str, deployment: str) -> list[psutil.Process]:
    """The live processes of a deployment's replicas (Ray names them in their title) on this
    process's cluster: its processes descend from the driver, those of other clusters on the
    machine (a benchmark's, a ``pose-pipeline serve``) do not."""
    title = f"ServeReplica:{app}:{deployment}"
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(proc.cmdline())
        except psutil.Error:  # exited meanwhile
            continue
        if title in cmdline and "ray::" in cmdline:
            found.append(proc)
    return found


def job_store(store_root: Path) -> LocalJobStore:
    return LocalJobStore(store_root)


@contextmanager
def first_chunk_task(store_root: Path, video: Path, decoding: DecodeOptions, filename: str) -> Iterator[ChunkTask]:
    """The task of a job's first chunk, to call the Decode and Tracking deployments directly:
    the video is stored under a job that has ended, so that no runner adopts it, and the job
    is deleted afterwards."""
    jobs = job_store(store_root)
    upload = jobs.new_upload_path()
    shutil.copyfile(video, upload)
    probed = probe(upload)
    now = time.time()
    record = jobs.create(JobRecord(id=new_job_id(), state=JobState.failed, created_at=now, updated_at=now,
                                   filename=filename, options=JobOptions(), video=probed,
                                   frames_total=probed.frame_count, engine="motion", decoding=decoding),
                         upload)
    try:
        yield ChunkTask(job_id=record.id, chunk_index=0, cursor=DecodeCursor(), video=probed, decoding=decoding,
                        engine="motion", filename=filename)
    finally:
        jobs.delete(record.id)
