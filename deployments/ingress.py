"""Ingress deployment: the HTTP API of ``pose_pipeline.api`` with stages that are the other
deployments.

The replica builds a ``JobService`` whose runner drives the Decode, Tracking and Aggregation
deployments chunk by chunk (``RayStages``), with Ray's metrics and log as its observer
(``metrics.MetricsObserver``), and Serve mounts ``create_app(service)``
(``__serve_build_asgi_app__``). Endpoints, errors and job logic are the library's; only what
needs Ray is here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import Any

import ray
from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle, DeploymentResponse, DeploymentResponseGenerator

from pose_pipeline.api import create_app
from pose_pipeline.chunks import ChunkReceipt, ChunkTask, Decoded
from pose_pipeline.config import Settings
from pose_pipeline.service import JobService
from pose_pipeline.video import VideoProbe

from .common import log, open_store
from .decode import ChunkRef
from .failures import as_pipeline_error, runner_death_cause
from .metrics import Metrics, MetricsObserver


class RayStages:
    """``service.ServiceStages`` over the deployments. Frames go from the Decode replica to a
    tracking replica through the object store; here pass only references (``ChunkRef``).
    Tracking and aggregation are chained, so a chunk's output goes to aggregation without
    passing here."""

    def __init__(self, decode: DeploymentHandle, tracking: DeploymentHandle, aggregation: DeploymentHandle):
        self.decoding, self.tracking, self.aggregation = decode, tracking, aggregation

    async def probe(self, path: Path) -> VideoProbe:
        return await _reply(self.decoding.probe.remote(str(path)))

    async def decode(self, task: ChunkTask) -> ChunkRef:
        return await _reply(self.decoding.decode.remote(task))

    async def track(self, decoded: Decoded) -> ChunkReceipt:
        tracked = self.tracking.track.remote(decoded)
        return await _reply(self.aggregation.commit.remote(tracked), tracked)

    async def finalize(self, job_id: str) -> dict[str, int]:
        return await _reply(self.aggregation.finalize.remote(job_id))

    def readiness_checks(self) -> Mapping[str, Awaitable[Any]]:
        return {"Decode": _reply(self.decoding.ping.remote()), "Tracking": _reply(self.tracking.ready.remote()),
                "Aggregation": _reply(self.aggregation.ping.remote())}


async def _reply(response: DeploymentResponse[Any] | DeploymentResponseGenerator[Any],
                 *upstream: DeploymentResponse[Any] | DeploymentResponseGenerator[Any]) -> Any:
    """The response's value, or its typed error; cancelling stops the upstream calls too."""
    assert isinstance(response, DeploymentResponse), "the stages' methods return one value"
    try:
        return await response
    except asyncio.CancelledError:  # deadline or cancellation: stop the work downstream too
        for pending in (response, *upstream):
            pending.cancel()
        raise
    except Exception as exc:
        raise as_pipeline_error(exc) from None


@serve.deployment(name="Ingress", max_ongoing_requests=128, max_queued_requests=256,
                  ray_actor_options={"num_cpus": 0.1})
@serve.ingress()
class Ingress:
    def __init__(self, settings: Settings, decode: DeploymentHandle, tracking: DeploymentHandle,
                 aggregation: DeploymentHandle) -> None:
        owner = f"ingress-{ray.get_runtime_context().get_actor_id()}"  # runner_death_cause reads it back
        observer = MetricsObserver(Metrics.create(), open_store(settings))
        self.service = JobService(settings, RayStages(decode, tracking, aggregation), owner, observer=observer,
                                  death_cause=runner_death_cause, log=log)

    def __serve_build_asgi_app__(self) -> FastAPI:
        """The app Serve mounts, once the service exists; its lifespan starts the service."""
        return create_app(self.service)
