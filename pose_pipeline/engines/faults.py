"""Test-only fault injection: an engine that wraps another and fails on purpose at a chosen
chunk, with the failures the service must survive.

Nothing in production code knows about it: tests compose it in by configuration only,
``engine: {name: faults, options: {engine: motion, faults: [...], state_dir: ...}}``
(docs/configuration.md, "Fault injection"). Nothing in a request can enable it. Each firing
is recorded as a file in ``state_dir``, so a fault set to fire once does not fire again in
the replica that replaces the one it killed. Faults are aimed at uploads by file name
(``VideoSpec.name``), which the wrapper keeps in its sessions' state.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InvalidOption
from ..results.schema import BodyModel, CameraModel, EngineInfo
from ..video import FrameChunk
from .base import ChunkOutput, Engine, Session, VideoSpec

_ALLOCATION_STEP = 256 * 1024 * 1024
_STATE_MAGIC = b"POSE-PIPELINE-FAULTS\n"


class FaultSpec(BaseModel):
    """One fault: what happens, at which chunk, for which uploads, how often."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["gpu_oom", "exit", "host_oom", "hang", "raise", "slow"] = Field(description=(
        "`gpu_oom`: CUDA out of memory above a batch size, exercising the halving path with torch's real "
        "error; `exit`: the process exits at once, like a segfault; `host_oom`: allocates until the memory "
        "guard, Ray or the kernel stops it; `hang`: never returns; `raise`: a plain exception; `slow`: takes "
        "`seconds` longer, then gives the normal result (a busy replica)"))
    chunk: int = Field(0, description="chunk index at which to fire")
    filename: str | None = Field(None, description="fire only for uploads with this file name; null: every job")
    times: int = Field(1, description="total firings across replica restarts (recorded as files in `state_dir`)")
    above_batch: int = Field(0, description=(
        "`gpu_oom` only: fail while the batch is larger than this (0: at every size)"))
    seconds: float = Field(0.0, description="`slow` only: how much longer the chunk takes")


class FaultInjector:
    """Which fault is due where; firings are counted in files, across processes."""

    def __init__(self, faults: tuple[FaultSpec, ...], state_dir: str | os.PathLike[str]) -> None:
        self.faults = faults
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def take(self, filename: str, chunk_index: int) -> FaultSpec | None:
        """The fault due at this chunk, if any firings are left (claims one firing)."""
        for number, fault in enumerate(self.faults):
            if fault.chunk != chunk_index or (fault.filename and fault.filename != filename):
                continue
            for firing in range(fault.times):
                try:  # O_EXCL makes the claim atomic across replicas
                    os.close(os.open(self.state_dir / f"fault-{number}-{firing}", os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    continue
                return fault
        return None

    @staticmethod
    def process(fault: FaultSpec, session: Session, chunk: FrameChunk, max_batch: int = 8) -> ChunkOutput:
        """Run ``session.process(chunk)`` with ``fault`` happening on the way."""
        if fault.kind == "exit":
            os._exit(1)  # like a segfault or a CUDA abort: no cleanup, no exception
        if fault.kind == "hang":
            while True:
                time.sleep(1)
        if fault.kind == "host_oom":
            _allocate_until_stopped()
        if fault.kind == "raise":
            raise RuntimeError("injected fault")
        if fault.kind == "slow":
            time.sleep(fault.seconds)
            return session.process(chunk)
        return _process_in_batches(session, chunk, max_batch, fault.above_batch)


class FaultyEngine(Engine):
    """``engine``, whose sessions meet the faults of ``injector``; otherwise the same engine
    (its info, camera and results: a run without a fault firing equals one without faults)."""

    def __init__(self, engine: Engine, injector: FaultInjector) -> None:
        self.engine = engine
        self.injector = injector
        self.holdback_frames = engine.holdback_frames

    @property
    def info(self) -> EngineInfo:
        return self.engine.info

    def open(self, video: VideoSpec) -> Session:
        return FaultySession(self.engine.open(video), video.name, self.injector)

    def restore(self, state: bytes) -> Session:
        if not state.startswith(_STATE_MAGIC):
            raise InvalidOption("the fault-injection engine cannot restore a state it did not write",
                                option="engine.options")
        name, _, inner = state[len(_STATE_MAGIC):].partition(b"\n")
        return FaultySession(self.engine.restore(inner), name.decode(), self.injector)

    def camera(self, video: VideoSpec) -> CameraModel | None:
        return self.engine.camera(video)

    def body_model(self) -> BodyModel | None:
        return self.engine.body_model()

    def check_health(self) -> None:
        self.engine.check_health()

    def close(self) -> None:
        self.engine.close()


class FaultySession(Session):
    def __init__(self, session: Session, name: str, injector: FaultInjector) -> None:
        self.session, self.name, self.injector = session, name, injector

    def process(self, chunk: FrameChunk) -> ChunkOutput:
        fault = self.injector.take(self.name, chunk.index)
        if fault is None:
            return self.session.process(chunk)
        return FaultInjector.process(fault, self.session, chunk)

    def export_state(self) -> bytes:
        # The file name travels with the state: a restored session still knows its faults.
        return _STATE_MAGIC + self.name.encode().replace(b"\n", b" ") + b"\n" + self.session.export_state()

    def close(self) -> None:
        self.session.close()


def faulty_engine(engine: str, faults: list[Any], state_dir: str,
                  options: dict[str, Any] | None = None) -> FaultyEngine:
    """The registry's factory for ``engine.name: faults``: ``engine`` (with its
    ``options``) wrapped with ``faults`` (``FaultSpec`` mappings), counted in ``state_dir``."""
    from .registry import EngineRegistry  # the registry names this module: import it late

    try:
        specs = tuple(FaultSpec.model_validate(f) for f in faults)
    except ValidationError as exc:
        raise InvalidOption(f"fault injection: {exc}", option="engine.options") from None
    return FaultyEngine(EngineRegistry().create(engine, options), FaultInjector(specs, state_dir))


def _allocate_until_stopped() -> None:
    """Touch ever more memory, as a leaking or oversized model would, until something stops it
    (the replica's memory guard, Ray's memory monitor or the kernel)."""
    hoard = []
    while True:
        block = np.empty(_ALLOCATION_STEP, dtype=np.uint8)
        block.fill(1)  # pages count only once written
        hoard.append(block)
        time.sleep(0.05)


def _process_in_batches(session: Session, chunk: FrameChunk, max_batch: int, fail_above: int) -> ChunkOutput:
    """Feed the chunk to the session in adaptive batches whose GPU 'runs out of memory'
    above ``fail_above`` frames: exercises the real halving path with torch's real error.
    Engines give the same result for any split of a chunk, so the output is unchanged."""
    import torch  # only here: decode and aggregation replicas import this package without torch

    from .batching import run_adaptive

    outputs: list[ChunkOutput] = []

    def run(part: slice) -> list[None]:
        if part.stop - part.start > fail_above:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        outputs.append(session.process(_slice(chunk, part)))
        return [None] * (part.stop - part.start)  # run_adaptive counts one result per frame

    run_adaptive(run, len(chunk), max_batch)
    return ChunkOutput(chunk.index, tuple(f for o in outputs for f in o.frames),
                       tuple(c for o in outputs for c in o.corrections))


def _slice(chunk: FrameChunk, part: slice) -> FrameChunk:
    return FrameChunk(index=chunk.index, frames=chunk.frames[part], source_indices=chunk.source_indices[part],
                      times=chunk.times[part], first_frame=chunk.first_frame + part.start,
                      is_last=chunk.is_last and part.stop == len(chunk), cursor=chunk.cursor)
