"""Tracking deployment (GPU-pinned): hosts one engine and tracks chunk after chunk.

Resources come from ``ray_actor_options`` in serve_config.yaml (fractional ``num_gpus``,
``num_cpus``, ``memory``). Because Ray's GPU fractions are bookkeeping only, the replica
caps its own CUDA memory to its fraction, and enforces its host memory limit itself
(``tracking.memory_limit_bytes``, see pose_pipeline.jobs.memguard).

An engine that cannot load (missing weights, package or device) does not crash the
replica in a restart loop: the replica stays up, reports the reason from ``ready`` (and so
``/readyz``), and fails every chunk with the same ``engine_unavailable`` error.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import ModuleType

import ray
from ray import serve

from pose_pipeline.jobs.messages import DecodedChunk, TrackedChunk
from pose_pipeline.config import Settings
from pose_pipeline.engines.registry import EngineRegistry
from pose_pipeline.errors import EngineUnavailable, GpuOutOfMemory, HostOutOfMemory, PipelineError
from pose_pipeline.jobs.memguard import MemoryGuard
from deployments.replicas import ReplicaBoard, ReplicaReport
from pose_pipeline.jobs.stages import TrackingStage

from .common import log, open_store
from .decode import ChunkRef
from .failures import as_pipeline_error
from .metrics import Metrics

#: Present wherever NVIDIA's kernel driver is loaded (also inside a GPU container).
NVIDIA_DRIVER = Path("/proc/driver/nvidia")


def _cuda() -> ModuleType | None:
    """``torch.cuda`` where this replica sees a CUDA device, else None. Without the driver no
    device can be visible, and torch is not imported: for an engine that does not use it
    (motion, blazepose) that saves the replica about 4 s of start-up and 300 MB."""
    if not NVIDIA_DRIVER.exists():
        return None
    import torch

    return torch.cuda if torch.cuda.is_available() else None


@serve.deployment(name="Tracking", max_ongoing_requests=1, health_check_period_s=5,
                  ray_actor_options={"num_cpus": 0.5})
class Tracking:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics.create()
        self.engine_error: PipelineError | None = None
        # Start time of each chunk in progress, by thread: a chunk that hung keeps its entry
        # even when Serve, after cancelling it, routes the next chunk here.
        self._in_progress: dict[int, float] = {}
        self.cuda = _cuda()
        engine = None
        try:
            if self.cuda is not None:
                import torch

                from pose_pipeline.engines.gpu import cap_memory

                cap_memory(torch.device("cuda", self.cuda.current_device()), settings.tracking.cuda_memory_fraction)
            engine = EngineRegistry().create(settings.engine.name, settings.engine.options)
        except PipelineError as exc:
            # A bad engine name or option here is the server's configuration, not the client's.
            self.engine_error = exc if exc.code == "engine_unavailable" else \
                EngineUnavailable(f"the engine is misconfigured: {exc.message}", engine=settings.engine.name)
            log.error("engine %r cannot load: %s", settings.engine.name, exc.message,
                      extra={"stage": "tracking", "code": exc.code})
        self.stage = None if engine is None else \
            TrackingStage(engine, open_store(settings), MemoryGuard(settings.tracking.memory_limit_bytes))
        # /readyz reads this, not a call through the request queue (deployments/replicas.py).
        self.board = ReplicaBoard(settings.store.root)
        context = serve.get_replica_context()
        # Named by application too: two applications may share a store root.
        self.deployment, self.replica = f"{context.app_name}.Tracking", context.replica_id.unique_id
        self._report()

    def _report(self) -> None:
        ready = self.stage is not None
        self.board.record(ReplicaReport(
            deployment=self.deployment, replica=self.replica, ready=ready, pid=os.getpid(), updated_at=time.time(),
            engine=self.stage.engine.info.to_dict() if self.stage is not None else None,
            error=None if ready or self.engine_error is None else self.engine_error.to_dict()))

    def _ready_stage(self) -> TrackingStage:
        if self.stage is None:
            assert self.engine_error is not None  # set when the engine did not load
            raise self.engine_error
        return self.stage

    def track(self, ref: ChunkRef) -> TrackedChunk:
        stage = self._ready_stage()
        try:
            decoded: DecodedChunk = ray.get(ref.chunk)  # zero-copy: frames stay in the object store
        except ray.exceptions.ObjectLostError as exc:  # with the Decode replica that owned it: worker_died
            raise as_pipeline_error(exc, "the Tracking deployment (its chunk from Decode)") from None
        started = time.perf_counter()
        self._in_progress[threading.get_ident()] = time.monotonic()
        if self.cuda is not None:
            self.cuda.reset_peak_memory_stats()
        try:
            tracked = stage.track(decoded)
        except (GpuOutOfMemory, HostOutOfMemory) as exc:
            self.metrics.oom_events.inc(tags={"kind": "gpu" if isinstance(exc, GpuOutOfMemory) else "host"})
            log.warning("chunk failed: %s", exc.message, extra={"pose_job_id": decoded.task.job_id,
                                                                 "stage": "tracking", "code": exc.code})
            raise
        finally:
            self._in_progress.pop(threading.get_ident(), None)
        seconds = time.perf_counter() - started
        self.metrics.chunk_done("tracking", tracked.frames, seconds)
        self.metrics.tracking_fps.set(tracked.frames / max(seconds, 1e-9))
        log.info("chunk tracked", extra={"pose_job_id": decoded.task.job_id, "stage": "tracking",
                                         "chunk": decoded.task.chunk_index, "frames": tracked.frames,
                                         "duration_s": round(seconds, 3)})
        if self.cuda is not None:
            self.metrics.gpu_memory_allocated.set(self.cuda.memory_allocated())
            self.metrics.gpu_memory_peak.set(self.cuda.max_memory_allocated())
        return tracked

    def check_health(self) -> None:
        # A chunk running past its deadline means a hung engine (or CUDA): fail the check so
        # that Serve replaces this replica; the job's runner has already retried elsewhere.
        limit = self.settings.jobs.chunk_timeout_s
        oldest = min(self._in_progress.values(), default=None)
        if oldest is not None and time.monotonic() - oldest > limit:
            raise RuntimeError(f"a chunk has been running for more than {limit:.0f} s (jobs.chunk_timeout_s)")
        if self.stage is not None:
            self.stage.engine.check_health()
        self._report()  # a heartbeat: Serve calls this beside the request queue, busy or not


