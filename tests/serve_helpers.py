"""Starting the real service on a local Ray cluster for tests, and finding its processes.

One cluster per test module (starting one takes about 10 s on two cores): the module's
fixture calls ``ServeCluster.start`` and ``stop``. Ports are picked free, so that test
modules and benchmarks on the same machine do not collide.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import closing, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import httpx
import psutil

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray  # noqa: E402
from ray import serve  # noqa: E402

from deployments.app import compose  # noqa: E402
from pose_pipeline.jobs import ChunkTask  # noqa: E402
from pose_pipeline.store import JobRecord, JobState, LocalJobStore, new_job_id  # noqa: E402
from pose_pipeline.video import DecodeCursor, DecodeOptions, probe  # noqa: E402

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
        self.env = env or {}

    def start(self) -> "ServeCluster":
        os.environ.update(self.env)
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
            for key in self.env:
                os.environ.pop(key, None)


def replica_processes(app: str, deployment: str) -> list[psutil.Process]:
    """The live processes of a deployment's replicas (Ray names them in their title)."""
    title = f"ServeReplica:{app}:{deployment}"
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if title in cmdline and "ray::" in cmdline:
            found.append(proc)
    return found


def is_ready(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


def offline_result(video: Path, out: Path, *args: str, engine: str = "motion") -> dict:
    """The offline CLI's result for ``video`` (frames at source size, as the tests' apps use)."""
    env = {"POSE_PIPELINE_DECODE__MAX_SIDE": "null", "POSE_PIPELINE_ENGINE__NAME": engine,
           **{k: os.environ[k] for k in ("PATH", "HOME", "XDG_CACHE_HOME") if k in os.environ}}
    subprocess.run([sys.executable, "-m", "pose_pipeline.cli", "track", str(video), "-o", str(out), *args],
                   check=True, capture_output=True, env=env)
    return json.loads(out.read_text())


def wait_until(predicate, timeout_s: float, interval_s: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def wait_job(client: httpx.Client, job_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """Poll a job until it ends; tolerates the ingress being briefly unreachable."""
    def ended():
        try:
            response = client.get(f"/v1/jobs/{job_id}")
        except httpx.TransportError:
            return None
        body = response.json()
        return body if body.get("state") in ("succeeded", "failed", "cancelled") else None
    return wait_until(ended, timeout_s, 0.3, f"job {job_id} to end")


def submit(client: httpx.Client, video: Path, name: str | None = None, **params: Any) -> dict[str, Any]:
    response = client.post("/v1/jobs", params={"filename": name or video.name, **params},
                           content=video.read_bytes(), headers={"Content-Type": "video/mp4"})
    assert response.status_code == 202, response.text
    return response.json()


def spool_files(store_root: Path) -> list[Path]:
    return list((store_root / "spool").iterdir())


def part_files(store_root: Path) -> list[Path]:
    """Files of uploads in parts (the folder exists once an ingress has started)."""
    return list((store_root / "uploads").iterdir())


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
                                   filename=filename, options={}, video=probed.to_dict(),
                                   frames_total=probed.frame_count, engine="motion", decoding=asdict(decoding)),
                         upload)
    try:
        yield ChunkTask(job_id=record.id, chunk_index=0, cursor=DecodeCursor(), video=probed, decoding=decoding,
                        engine="motion", filename=filename)
    finally:
        jobs.delete(record.id)
