"""Talking to the API over HTTP with any ``httpx.Client`` (a real connection, or Starlette's
``TestClient`` in front of the app in this process), and what a test compares a service's
results with (the ``api`` fixture). Nothing here needs Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


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


def wait_until(predicate: Callable[[], T], timeout_s: float, interval_s: float = 0.2, what: str = "condition") -> T:
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
    return wait_until(ended, timeout_s, 0.1, f"job {job_id} to end")


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
