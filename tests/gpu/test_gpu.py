"""The engine's CUDA code on a real GPU: memory cap, adaptive batching on real out-of-memory
errors, device selection, the stage meter. Real allocations, no mocks; skipped without CUDA (CI).

Run on a GPU machine: ``python -m pytest -m gpu tests/gpu/test_gpu.py``. The memory cap is
process-wide, so every test restores it (``device`` fixture) and measures against what the
process holds at its start, not against absolute numbers.
"""

from __future__ import annotations

import pytest
import torch

from pose_pipeline.engines.batching import BatchStats, free_cuda_cache, run_adaptive
from pose_pipeline.engines.gpu import StageMeter, cap_memory, select_device
from pose_pipeline.errors import GpuOutOfMemory, InvalidOption

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="needs a CUDA device (real GPU allocations); run on a GPU machine"),
]

MIB = 2 ** 20


@pytest.fixture
def device():
    free_cuda_cache()
    device = torch.device("cuda", torch.cuda.current_device())
    # cuBLAS takes its workspace from torch's allocator on the first matmul and keeps it. Made
    # now, on an empty cache, it gets a segment of its own; made later, it can be cut out of a
    # large cached block and pin that whole segment, whose free part the cap does not count.
    torch.ones(2, 8, 8, device=device) @ torch.ones(8, 8, device=device)
    yield device
    torch.cuda.set_per_process_memory_fraction(1.0, device)
    free_cuda_cache()


def fraction_allowing(device: torch.device, extra_bytes: int) -> float:
    """The fraction that lets this process reserve ``extra_bytes`` more than it has now
    (the allocator's cap counts reserved memory: its cache included)."""
    total = torch.cuda.get_device_properties(device).total_memory
    return (torch.cuda.memory_reserved(device) + extra_bytes) / total


def allocate(device: torch.device, size: int) -> torch.Tensor:
    return torch.empty(size, dtype=torch.uint8, device=device)


# --- the cap -------------------------------------------------------------------------------


def test_cap_memory_caps_the_allocator(device):
    cap = 1024 * MIB
    fraction = fraction_allowing(device, cap)
    assert cap_memory(device, fraction) == fraction
    with pytest.raises(torch.cuda.OutOfMemoryError):
        allocate(device, cap * 3 // 2)
    held = allocate(device, cap // 2)  # below the cap: fine
    with pytest.raises(torch.cuda.OutOfMemoryError):
        allocate(device, cap * 3 // 4)  # fits alone, not on top of what is held
    del held
    free_cuda_cache()
    allocate(device, cap * 3 // 4)  # and fits again once that is freed


def test_no_cap_without_a_setting_or_a_fractional_ray_gpu(device):
    assert cap_memory(device, None) is None  # no Ray here: the process owns the device
    # The same allocation that the capped test refuses; it would fail if a cap were left over.
    allocate(device, 1536 * MIB)
    assert cap_memory(torch.device("cpu"), 0.5) is None


# --- adaptive batching on real out-of-memory errors ------------------------------------------


class TwoLayers:
    """A model-like function: per-item memory grows with batch size (activations of
    ``rows`` x 4096 floats per item). Inputs and weights are -1/0/1, so every fp32 sum is a
    small integer and the results are exact whatever the batch size or cuBLAS kernel."""

    K, N = 1024, 4096

    def __init__(self, device: torch.device, rows: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.w = torch.randint(-1, 2, (self.K, self.N), generator=generator).float().to(device)
        self.rows = rows
        self.calls: list[int] = []

    def __call__(self, batch: slice) -> list[float]:
        self.calls.append(batch.stop - batch.start)
        items = torch.arange(batch.start, batch.stop, device=self.w.device).view(-1, 1, 1)
        pattern = torch.arange(self.rows * self.K, device=self.w.device).view(1, self.rows, self.K)
        x = ((pattern * (items + 1) * 7919 + items) % 3 - 1).float()  # item i's own "crop"
        y = torch.relu(x @ self.w) @ self.w.T
        return y.double().sum(dim=(1, 2)).tolist()  # doubles: exact sums of integers


def peak_of(fn, batch: slice, device: torch.device) -> int:
    """Bytes allocated by ``fn(batch)`` at its peak, above what was allocated before."""
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn(batch)
    return torch.cuda.max_memory_allocated(device) - before


def test_halves_on_real_oom_and_returns_the_uncapped_results(device):
    model = TwoLayers(device, rows=1024)
    count, max_batch = 40, 32
    reference = run_adaptive(model, count, max_batch)  # uncapped
    # Room for a batch of 4 but not of 8: 32, 16 and 8 must fail, 4 must run.
    peak_4, peak_8 = peak_of(model, slice(0, 4), device), peak_of(model, slice(0, 8), device)
    budget = (peak_4 + peak_8) // 2
    free_cuda_cache()
    cap = cap_memory(device, fraction_allowing(device, budget))
    cap_bytes = int(cap * torch.cuda.get_device_properties(device).total_memory)
    allocated_before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    model.calls.clear()
    stats = BatchStats()
    result = run_adaptive(model, count, max_batch, stats)

    print(f"\npeak batch 4 {peak_4 / MIB:.0f} MiB, batch 8 {peak_8 / MIB:.0f} MiB; cap {cap_bytes / MIB:.0f} MiB "
          f"({budget / MIB:.0f} above the {(cap_bytes - budget) / MIB:.0f} reserved, "
          f"{allocated_before / MIB:.0f} allocated); calls {model.calls}; "
          f"halvings {stats.halvings}; peak reserved {torch.cuda.max_memory_reserved(device) / MIB:.0f} MiB")
    assert result == reference
    assert model.calls[:4] == [32, 16, 8, 4] and stats.halvings == 3
    assert stats.batch_sizes == [4] * 10
    assert torch.cuda.max_memory_reserved(device) <= cap_bytes  # the cap held throughout
    assert torch.cuda.memory_allocated(device) == allocated_before  # failed attempts left nothing


def test_single_item_too_large_fails_and_leaves_memory_as_it_was(device):
    big, small = TwoLayers(device, rows=8192), TwoLayers(device, rows=256)  # ~350 vs ~10 MiB an item
    reference_small = run_adaptive(small, 3, 4)
    free_cuda_cache()
    cap_memory(device, fraction_allowing(device, 96 * MIB))
    allocated_before = torch.cuda.memory_allocated(device)
    reserved_before = torch.cuda.memory_reserved(device)

    with pytest.raises(GpuOutOfMemory) as info:
        run_adaptive(big, 3, max_batch=4)
    print(f"\nallocated {allocated_before / MIB:.1f} -> {torch.cuda.memory_allocated(device) / MIB:.1f} MiB, "
          f"reserved {reserved_before / MIB:.1f} -> {torch.cuda.memory_reserved(device) / MIB:.1f} MiB")
    assert big.calls == [3, 2, 1]
    assert info.value.code == "gpu_out_of_memory" and info.value.details == {"batch_size": 1, "max_batch": 4}
    assert info.value.__context__ is None  # raised outside the except block: holds no tensors
    assert torch.cuda.memory_allocated(device) == allocated_before
    torch.cuda.empty_cache()
    assert torch.cuda.memory_reserved(device) <= reserved_before

    stats = BatchStats()  # the replica takes the next chunk, under the same cap
    assert run_adaptive(small, 3, 4, stats) == reference_small
    assert stats.halvings == 0


# --- device ----------------------------------------------------------------------------------


def test_select_device_is_the_current_cuda_device():
    current = torch.device("cuda", torch.cuda.current_device())
    assert select_device(None) == current
    assert select_device("cuda") == current
    assert torch.ones(1, device=select_device(None)).device == current
    for physical_index in ("cuda:0", "cuda:1"):
        with pytest.raises(InvalidOption):
            select_device(physical_index)


def test_stage_meter_keeps_each_stage_s_peak_memory(device):
    meter = StageMeter(device, peak_memory=True)
    base = torch.cuda.memory_allocated(device)
    with meter("big"):
        block = torch.empty(256 * MIB, dtype=torch.uint8, device=device)
        del block
    with meter("small"):
        block = torch.empty(16 * MIB, dtype=torch.uint8, device=device)
        del block
    with meter("big"):  # a later, smaller peak of the same stage does not lower it
        pass
    assert meter.peak_bytes["big"] - base >= 256 * MIB
    assert 16 * MIB <= meter.peak_bytes["small"] - base < 256 * MIB
    assert set(meter.seconds) == {"big", "small"}


def test_stage_meter_leaves_the_peak_counter_alone_by_default(device):
    """The Tracking replica reads torch's peak for its whole chunk: the engine's meter must
    not reset it between stages."""
    torch.cuda.reset_peak_memory_stats(device)
    block = torch.empty(128 * MIB, dtype=torch.uint8, device=device)
    del block
    peak = torch.cuda.max_memory_allocated(device)
    meter = StageMeter(device)
    with meter("later"):
        pass
    assert torch.cuda.max_memory_allocated(device) == peak and not meter.peak_bytes
