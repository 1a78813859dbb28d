"""Ingress deployment: the HTTP API of ``pose_pipeline.api.app`` with stages that are the other
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
from ray.serve.schema import ReplicaState

from pose_pipeline import errors
from pose_pipeline.api.app import create_app
from pose_pipeline.jobs.messages import ChunkReceipt, ChunkTask, Decoded
from pose_pipeline.config import Settings
from pose_pipeline.errors import NotReady
from deployments.replicas import ReplicaBoard
from pose_pipeline.api.service import JobService
from pose_pipeline.video import VideoProbe

from .common import log, open_store
from .decode import ChunkRef
from .failures import as_pipeline_error, runner_death_cause
from .metrics import Metrics, MetricsObserver


class RayStages:
    """``service.ServiceStages`` over the deployments. Frames go from the Decode replica to a
    tracking replica through the object store; here pass only references (``ChunkRef``).
    A chunk's tracked output does come here, and goes on to aggregation by value: see
    ``track``."""

    def __init__(self, decode: DeploymentHandle, tracking: DeploymentHandle, aggregation: DeploymentHandle,
                 board: ReplicaBoard | None = None, app_name: str = "") -> None:
        self.decoding, self.tracking, self.aggregation = decode, tracking, aggregation
        self.board, self.app_name = board, app_name

    async def probe(self, path: Path) -> VideoProbe:
        return await _reply(self.decoding.probe.remote(str(path)), "the Decode deployment (probe)")

    async def decode(self, task: ChunkTask) -> ChunkRef:
        return await _reply(self.decoding.decode.remote(task), "the Decode deployment")

    async def track(self, decoded: Decoded) -> ChunkReceipt:
        # Passed on as a reference, the output's only copy would live on the tracking replica's
        # node; when that node died, the commit waited for the lost object with no error from
        # Ray until jobs.chunk_timeout_s. Held here, a node's loss is an error within seconds.
        tracked = await _reply(self.tracking.track.remote(decoded), "the Tracking deployment")
        return await _reply(self.aggregation.commit.remote(tracked), "the Aggregation deployment (commit)")

    async def finalize(self, job_id: str) -> dict[str, int]:
        return await _reply(self.aggregation.finalize.remote(job_id), "the Aggregation deployment (result)")

    def readiness_checks(self) -> Mapping[str, Awaitable[Any]]:
        """From Serve's status of the application (the controller's, not a request to any
        replica) and the reports the Tracking replicas record (engine loaded or why not):
        nothing here waits in a replica's request queue behind the work."""
        status = asyncio.ensure_future(asyncio.to_thread(self._deployments))
        return {name: self._ready(name, status) for name in ("Decode", "Tracking", "Aggregation")}

    def _deployments(self) -> Mapping[str, Any]:
        return serve.status().applications[self.app_name].deployments

    async def _ready(self, name: str, status: asyncio.Future[Mapping[str, Any]]) -> Any:
        deployment = (await status).get(name)
        if deployment is None:
            raise NotReady(f"Serve does not know the deployment {name}")
        running = sum(n for state, n in deployment.replica_states.items() if state == ReplicaState.RUNNING)
        if not running:
            raise NotReady(f"no replica is running ({deployment.status}: {deployment.message or 'starting'})",
                           deployments={name: {"status": str(deployment.status),
                                               "replicas": {str(k): v for k, v in deployment.replica_states.items()}}})
        if name != "Tracking":
            return True
        reports = self.board.reports(f"{self.app_name}.Tracking") if self.board is not None else []
        loaded = [report for report in reports if report.ready]
        if loaded:
            return loaded[0].engine
        if reports and reports[0].error is not None:
            raise errors.from_dict(reports[0].error)  # e.g. engine_unavailable, naming what is missing
        raise NotReady(f"{running} replica(s) running, none has reported its engine loaded yet")


async def _reply(response: DeploymentResponse[Any] | DeploymentResponseGenerator[Any], stage: str) -> Any:
    """The response's value, or its typed error (``stage``: whom it came from); cancelling
    stops the call too."""
    assert isinstance(response, DeploymentResponse), "the stages' methods return one value"
    try:
        return await response
    except asyncio.CancelledError:  # deadline or cancellation: stop the work downstream too
        response.cancel()
        raise
    except Exception as exc:
        raise as_pipeline_error(exc, stage) from None


@serve.deployment(name="Ingress", max_ongoing_requests=128, max_queued_requests=256,
                  ray_actor_options={"num_cpus": 0.1})
@serve.ingress()
class Ingress:
    def __init__(self, settings: Settings, decode: DeploymentHandle, tracking: DeploymentHandle,
                 aggregation: DeploymentHandle) -> None:
        owner = f"ingress-{ray.get_runtime_context().get_actor_id()}"  # runner_death_cause reads it back
        observer = MetricsObserver(Metrics.create(), open_store(settings))
        stages = RayStages(decode, tracking, aggregation, ReplicaBoard(settings.store.root),
                           serve.get_replica_context().app_name)
        self.service = JobService(settings, stages, owner, observer=observer, death_cause=runner_death_cause,
                                  log=log)

    def __serve_build_asgi_app__(self) -> FastAPI:
        """The app Serve mounts, once the service exists; its lifespan starts the service."""
        return create_app(self.service)
