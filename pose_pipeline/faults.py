"""Test-only fault injection at a chosen chunk: the failures the service must survive.

Faults come only from server-side configuration (``tracking.faults``); nothing in a request
can enable them. Each firing is recorded as a file in ``fault_state_dir``, so a fault set
to fire once does not fire again in the replica that replaces the one it killed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
import numpy as np

from .config import FaultSpec
from .engines.base import ChunkOutput, Session
from .video import FrameChunk

_ALLOCATION_STEP = 256 * 1024 * 1024


class FaultInjector:
    def __init__(self, faults: tuple[FaultSpec, ...], state_dir: str | os.PathLike) -> None:
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
        return _process_in_batches(session, chunk, max_batch, fault.above_batch)


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
    import torch  # only here: decode and aggregation replicas import this module without torch

    from .engines.batching import run_adaptive

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
