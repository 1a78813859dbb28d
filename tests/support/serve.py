"""Starting the real service on a local Ray cluster for tests and finding its processes (the
``serve_tools`` and ``serve_cluster`` fixtures); with the HTTP helpers of ``support.api``.

One cluster per test module (starting one takes about 10 s on two cores): the module's
fixture starts it with ``serve_cluster``, which stops it after the module. Ports are picked
free, so that test modules and benchmarks on the same machine do not collide.
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
from pose_pipeline.chunks import ChunkTask
from pose_pipeline.options import JobOptions
from pose_pipeline.store import JobRecord, JobState, LocalJobStore, new_job_id
from pose_pipeline.video import DecodeCursor, DecodeOptions, probe

from .api import is_ready, offline_result, part_files, spool_files, submit, wait_job, wait_until

__all__ = ["ServeCluster", "first_chunk_task", "free_port", "is_ready", "job_store", "offline_result", "part_files",
           "replica_processes", "spool_files", "submit", "wait_job", "wait_until"]

#: Ray 2.60 asks local clusters for a token: the tests' clusters are local (docs/operations.md).
#: Ray starts its workers at niceness 15; the suite's other worker (pytest -n 2, no cluster) runs
#: at 0, and on two cores it starved the replicas past their leases and metric exports
#: (measured: test_metrics failed so); at 0 they share the cores evenly.
CLUSTER_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_worker_niceness": "0"}

# Small CPU shares so that every replica of every app fits on a 2-core machine; JSON logs
# as in serve_config.yaml, so that job ids are fields of each line.
SMALL = {"ray_actor_options": {"num_cpus": 0.05}, "logging_config": {"encoding": "JSON"}}


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
        return self.url(route_prefix)

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
