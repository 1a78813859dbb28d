"""The replica's CUDA device and its memory cap.

Ray gives a GPU replica its device by setting ``CUDA_VISIBLE_DEVICES``; inside the process
that device is always ``cuda:0`` (or torch's current device), never a physical index from
configuration. Ray's fractional ``num_gpus`` is bookkeeping only, so the replica caps its
own allocator with ``torch.cuda.set_per_process_memory_fraction``: two 0.5-GPU replicas on
one card then cannot starve each other, and a runaway allocation fails as an out-of-memory
error inside this process instead of in the neighbour.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from ..errors import EngineUnavailable, InvalidOption

log = logging.getLogger(__name__)


def ray_assigned_gpus() -> float | None:
    """GPUs Ray assigned to this worker (e.g. 0.5), or None outside a Ray worker."""
    try:
        import ray
        if not ray.is_initialized():
            return None
        assigned: Mapping[str, Any] = ray.get_runtime_context().get_assigned_resources()
    except Exception:  # not in a Ray worker, or an older Ray: no cap from Ray
        return None
    gpus = assigned.get("GPU")
    return float(gpus) if gpus else None


def memory_fraction(explicit: float | None, assigned_gpus: float | None) -> float | None:
    """The fraction of the device this process may use, or None for no cap.

    An explicit setting wins; otherwise a fractional Ray assignment (0 < gpus < 1) is the
    cap. A whole GPU or more needs no cap (the process owns its devices).
    """
    if explicit is not None:
        if not 0.0 < explicit <= 1.0:
            raise InvalidOption(f"cuda_memory_fraction must be in (0, 1], got {explicit}",
                                option="cuda_memory_fraction")
        return float(explicit)
    if assigned_gpus is not None and 0.0 < assigned_gpus < 1.0:
        return float(assigned_gpus)
    return None


def select_device(requested: str | None) -> torch.device:
    """``cuda`` (the current device Ray made visible) or ``cpu``; an index is refused.

    ``None`` means CUDA when available, else CPU (development only: upstream's tracker
    itself calls ``.cuda()`` in its pose predictor).
    """
    if requested is None:
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested not in ("cuda", "cpu"):
        raise InvalidOption(f"device must be 'cuda' or 'cpu' (the GPU is the one Ray assigned), "
                            f"got {requested!r}", option="device")
    if requested == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise EngineUnavailable("the phalp engine was asked for CUDA but no CUDA device is visible "
                                "to this process (check the replica's num_gpus and the driver)",
                                engine="phalp")
    return torch.device("cuda", torch.cuda.current_device())


def cap_memory(device: torch.device, explicit_fraction: float | None = None) -> float | None:
    """Apply the memory cap on ``device``; returns the fraction used (None: no cap)."""
    fraction = memory_fraction(explicit_fraction, ray_assigned_gpus())
    if device.type != "cuda" or fraction is None:
        return None
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    log.info("CUDA memory of %s capped to %.0f%%", device, 100 * fraction)
    return fraction


class StageMeter:
    """Seconds, and optionally peak CUDA memory, per named stage, accumulated over many calls.

    ``with meter("detect"): ...`` adds the block's wall time to ``seconds["detect"]``; on a
    CUDA device the block ends with a synchronisation, so that its time covers its kernels.
    With ``peak_memory`` (benchmarks), ``peak_bytes["detect"]`` keeps the most memory torch's
    allocator held during any such block, weights included. It is off by default because it
    resets torch's peak counter, which the Tracking replica reads for its whole chunk.
    """

    def __init__(self, device: torch.device, peak_memory: bool = False) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.peak_memory = peak_memory and self.cuda
        self.seconds: dict[str, float] = defaultdict(float)
        self.peak_bytes: dict[str, int] = defaultdict(int)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if self.peak_memory:
            torch.cuda.reset_peak_memory_stats(self.device)
        started = time.perf_counter()
        try:
            yield
        finally:
            if self.cuda:
                torch.cuda.synchronize(self.device)
            if self.peak_memory:
                self.peak_bytes[stage] = max(self.peak_bytes[stage], torch.cuda.max_memory_allocated(self.device))
            self.seconds[stage] += time.perf_counter() - started
