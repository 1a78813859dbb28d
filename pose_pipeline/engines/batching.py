"""Run a model over many items in batches that shrink when the GPU runs out of memory.

``run_adaptive`` calls ``fn(slice)`` for consecutive slices of at most ``max_batch`` items.
On ``torch.cuda.OutOfMemoryError`` it drops every reference to the failed attempt, returns
the cached blocks to the driver (``torch.cuda.empty_cache``), halves the batch size and
retries the same slice. At batch size 1 there is nothing left to halve: it frees memory the
same way and raises ``GpuOutOfMemory``, so the replica's GPU memory is back where it was
before the call and the replica can take the next chunk.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from ..errors import GpuOutOfMemory

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass
class BatchStats:
    """What happened during one ``run_adaptive`` call (for logs and metrics)."""

    batch_sizes: list[int] = field(default_factory=list)  # size of each successful batch
    halvings: int = 0
    #: The batch limit the call ended with (``max_batch`` halved ``halvings`` times): the
    #: next call of the same model can start there instead of failing its way down again.
    limit: int = 0


def free_cuda_cache() -> None:
    """Release memory held by unreachable tensors and torch's cache (no-op without CUDA)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_adaptive(fn: Callable[[slice], Sequence[T]], count: int, max_batch: int,
                 stats: BatchStats | None = None,
                 on_oom: Callable[[], None] = free_cuda_cache) -> list[T]:
    """``fn`` over ``range(count)`` in slices; returns the concatenation of its results.

    ``fn(s)`` must return one result per item of ``s``, and must not keep references to
    its GPU tensors after raising (ordinary code does not).
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    stats = stats if stats is not None else BatchStats()
    results: list[T] = []
    batch = max_batch
    start = 0
    while start < count:
        stop = min(count, start + batch)
        failed = False
        try:
            out = fn(slice(start, stop))
        except torch.cuda.OutOfMemoryError:
            # Leave the except block before freeing: the exception's traceback holds the
            # frames (and tensors) of the failed attempt until then.
            failed = True
        if failed:
            on_oom()
            if batch == 1:
                raise GpuOutOfMemory(
                    f"CUDA out of memory on a single item (started at batch {max_batch}, "
                    "halved down to 1); lower the chunk size or frame size, or give the "
                    "replica a larger GPU fraction", batch_size=1, max_batch=max_batch)
            batch = max(1, batch // 2)
            stats.halvings += 1
            log.warning("CUDA out of memory at batch %d; retrying with batch %d", stop - start, batch)
            continue
        if len(out) != stop - start:
            raise ValueError(f"batch function returned {len(out)} results for {stop - start} items")
        results.extend(out)
        stats.batch_sizes.append(stop - start)
        start = stop
    stats.limit = batch
    return results
