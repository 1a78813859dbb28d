"""A replica's own memory limit.

Ray's ``memory`` actor option only reserves capacity for scheduling; nothing stops a
replica from using more until the node's memory monitor or the kernel kills processes,
possibly other replicas too. ``MemoryGuard`` watches this process's resident memory while
a chunk runs and, past the limit, raises ``HostOutOfMemory`` inside the thread doing the
work: the chunk fails with a clear error, its memory is released, the process lives on.
"""

from __future__ import annotations

import ctypes
import gc
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

from ..errors import HostOutOfMemory


class _LimitExceeded(BaseException):
    """Raised asynchronously in the worker thread; BaseException so that no ``except
    Exception`` in engine code swallows it."""


class MemoryGuard:
    def __init__(self, limit_bytes: int | None, interval_s: float = 0.02) -> None:
        self.limit_bytes = limit_bytes
        self.interval_s = interval_s
        self._process = psutil.Process()

    def rss(self) -> int:
        return self._process.memory_info().rss

    @contextmanager
    def watch(self) -> Iterator[None]:
        """Guard the calling thread for the duration of the block."""
        limit = self.limit_bytes
        if not limit:
            yield
            return
        target = threading.get_ident()
        stop = threading.Event()
        peak = [0]

        def monitor() -> None:
            while not stop.wait(self.interval_s):
                peak[0] = max(peak[0], self.rss())
                if peak[0] > limit:
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target),
                                                               ctypes.py_object(_LimitExceeded))
                    return

        thread = threading.Thread(target=monitor, name="memory-guard", daemon=True)
        thread.start()
        try:
            yield
        except _LimitExceeded as exc:
            # The traceback holds the interrupted frames and, through their locals, the memory
            # they allocated; the error raised below would keep them alive as its context.
            traceback.clear_frames(exc.__traceback__)
            gc.collect()
            raise HostOutOfMemory(
                f"the tracking replica used {peak[0] / 2**20:.0f} MiB, over its limit of "
                f"{limit / 2**20:.0f} MiB (tracking.memory_limit_bytes); use a smaller "
                "max_side or chunk (decode.chunk_bytes), or give the replica more memory",
                used_bytes=peak[0], limit_bytes=limit, kind="host") from None
        finally:
            stop.set()
            thread.join()
