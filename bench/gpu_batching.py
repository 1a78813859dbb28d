"""Peak GPU memory of an HMR2-sized batched crop step: vs max_batch, vs video length, under a cap.

The network is a ViT of HMR2.0's backbone size (ViT-H/16: width 1280, depth 32, 16 heads,
MLP 5120, on the 256x192 centre of a 256x256 crop: 192 tokens, about 630 M parameters) and a
linear head, with RANDOM weights, driven by the project's ``run_adaptive`` exactly as the
phalp engine drives HMR2: crops made on the CPU, stacked, moved to the GPU, one forward per
batch, per-crop results copied back. Needs only torch and a CUDA GPU (no upstream, no weights).

Representative: the weights' memory (fp32), the backbone's activation memory per crop and
its speed, the batching and out-of-memory behaviour. Not representative: the rest of the
engine's per-crop work (HMR2's transformer SMPL head, SMPL, the texture sampler's depth
render and 4x256x256 UV map, HMAR's appearance encoder) and the detector (ViTDet-H, the
larger user of memory and time upstream); numbers are for this step, not the engine.

    python bench/gpu_batching.py [--quick]

Tables: (1) max_batch sweep: peak memory above the weights and crops/s, fp32 and bf16
autocast; (2) chunk count sweep at max_batch 32: peak memory after 1..N chunks of the same
size (it should not grow with the video); (3) max_batch 64 under a memory cap smaller than
that batch needs above the weights: halvings, the largest batch that ran, peak reserved vs the
cap, and the same chunks uncapped at that batch (what the failed attempts cost: the first
chunk halves its way down, the following ones start at the batch it settled on, as a session
of the phalp engine does).
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

# importing common put the repository on sys.path
from pose_pipeline.engines.batching import BatchStats, free_cuda_cache, run_adaptive
from pose_pipeline.engines.gpu import cap_memory

from common import log, mib, parse_args, table, write_result

WIDTH, DEPTH, HEADS, MLP, PATCH = 1280, 32, 16, 5120, 16
CROPS_PER_CHUNK = 90  # e.g. 30 frames x 3 people
SWEEP_CROPS = 256
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


class Block(torch.nn.Module):
    """A pre-norm ViT block, as in HMR2's (ViTPose) backbone."""

    def __init__(self) -> None:
        super().__init__()
        self.norm1, self.norm2 = torch.nn.LayerNorm(WIDTH), torch.nn.LayerNorm(WIDTH)
        self.qkv, self.proj = torch.nn.Linear(WIDTH, 3 * WIDTH), torch.nn.Linear(WIDTH, WIDTH)
        self.fc1, self.fc2 = torch.nn.Linear(WIDTH, MLP), torch.nn.Linear(MLP, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, HEADS, -1).permute(2, 0, 3, 1, 4)
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, WIDTH))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class Hmr2Sized(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.patch = torch.nn.Conv2d(3, WIDTH, PATCH, stride=PATCH)
        self.pos = torch.nn.Parameter(torch.zeros(1, (256 // PATCH) * (192 // PATCH), WIDTH))
        self.blocks = torch.nn.Sequential(*(Block() for _ in range(DEPTH)))
        self.head = torch.nn.Linear(WIDTH, 24 * 6 + 10 + 3)  # rotations (6D), betas, camera

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        x = self.patch(crops[:, :, :, 32:-32]).flatten(2).transpose(1, 2) + self.pos  # the 256x192 centre
        return self.head(self.blocks(x).mean(1)).float()


def crop_step(model: torch.nn.Module, crops: np.ndarray, precision: str):
    """``fn`` for run_adaptive: like PersonFeatures, CPU crops in, per-crop CPU arrays out."""
    device = next(model.parameters()).device
    dtype = PRECISIONS[precision]

    def fn(batch: slice) -> list[np.ndarray]:
        x = torch.from_numpy(crops[batch]).to(device, non_blocking=True).permute(0, 3, 1, 2).float() / 255
        with torch.inference_mode(), (torch.autocast("cuda", dtype=dtype) if dtype else nullcontext()):
            out = model(x)
        return list(out.cpu().numpy())
    return fn


def run(model, weights_bytes: int, crops_per_chunk: int, chunks: int, max_batch: int, precision: str,
        rng: np.random.Generator) -> dict:
    """Chunks processed one after the other, as a session does; peaks over all of them.
    Every chunk has the same crops (made once, not timed): content changes neither time nor memory.
    Two passes from an empty cache; only the second is timed, when the allocator's cache is
    warm, as in a replica that has already processed a chunk."""
    crops = rng.integers(0, 256, (crops_per_chunk, 256, 256, 3), dtype=np.uint8)
    fn = crop_step(model, crops, precision)
    free_cuda_cache()
    torch.cuda.reset_peak_memory_stats()
    for _ in range(2):
        halvings, sizes, limit, outputs, started = 0, [], max_batch, 0, time.perf_counter()
        for _ in range(chunks):  # as a session: each chunk starts at the limit the last one ended with
            stats = BatchStats()
            outputs += len(run_adaptive(fn, len(crops), limit, stats))
            halvings, sizes, limit = halvings + stats.halvings, sizes + stats.batch_sizes, stats.limit
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    assert outputs == crops_per_chunk * chunks
    return {"precision": precision, "max_batch": max_batch, "chunks": chunks, "crops": outputs,
            "peak_above_weights_mib": round(mib(torch.cuda.max_memory_allocated() - weights_bytes), 1),
            "peak_reserved_mib": round(mib(torch.cuda.max_memory_reserved()), 1),
            "crops_per_s": round(outputs / seconds, 1), "halvings": halvings,
            "largest_batch": max(sizes)}


def main() -> None:
    args = parse_args(__doc__, quick="fewer batch sizes and chunk counts", port=False)
    if not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU")
    device = torch.device("cuda", torch.cuda.current_device())
    rng = np.random.default_rng(0)
    # run_adaptive logs each halving; the tables count them
    logging.getLogger("pose_pipeline.engines.batching").setLevel(logging.ERROR)
    with torch.device(device):  # built on the GPU: no 2.5 GB copy from the host
        model = Hmr2Sized().eval()
    free_cuda_cache()
    weights = torch.cuda.memory_allocated()
    log(f"{sum(p.numel() for p in model.parameters()) / 1e6:.0f} M parameters, {mib(weights):.0f} MiB")
    for precision in PRECISIONS:  # warm-up: cuBLAS handles, kernel selection
        run(model, weights, 8, 1, 8, precision, rng)

    batches = [1, 8, 32] if args.quick else [1, 2, 4, 8, 16, 32, 64]
    by_batch = [run(model, weights, SWEEP_CROPS, 1, b, p, rng) for p in PRECISIONS for b in batches]
    counts = [1, 4] if args.quick else [1, 4, 16]
    by_chunks = [run(model, weights, CROPS_PER_CHUNK, n, 32, p, rng) for p in PRECISIONS for n in counts]

    # A cap that leaves room for about a quarter of what the largest batch needs above the weights.
    largest = next(r for r in by_batch if r["max_batch"] == max(batches) and r["precision"] == "fp32")
    need_bytes = largest["peak_above_weights_mib"] * 2 ** 20
    free_cuda_cache()
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = cap_memory(device, (torch.cuda.memory_reserved() + need_bytes / 4) / total)
    try:
        capped = run(model, weights, CROPS_PER_CHUNK, 4, max(batches), "fp32", rng)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
    capped["cap_mib"] = round(mib(fraction * total), 1)
    # The same work uncapped at the batch the cap allowed: what the failed attempts cost.
    settled = run(model, weights, CROPS_PER_CHUNK, 4, capped["largest_batch"], "fp32", rng)

    name = torch.cuda.get_device_name(device)
    print(f"\n{name}, torch {torch.__version__}, weights {mib(weights):.0f} MiB (random, fp32)\n")
    columns = ["precision", "max_batch", "chunks", "crops", "peak_above_weights_mib", "peak_reserved_mib",
               "crops_per_s", "halvings", "largest_batch"]
    print(f"max_batch sweep ({SWEEP_CROPS} crops)\n" + table(by_batch, columns))
    print(f"\nchunk count sweep ({CROPS_PER_CHUNK} crops a chunk, max_batch 32)\n" + table(by_chunks, columns))
    print("\nunder a cap (4 chunks; halvings of the timed pass), and uncapped at the batch it settled on\n"
          + table([capped, settled], columns + ["cap_mib"]))
    write_result("gpu_batching", args.quick, {"device": name, "torch": torch.__version__,
                                              "weights_mib": round(mib(weights), 1), "by_batch": by_batch,
                                              "by_chunks": by_chunks, "capped": capped,
                                              "uncapped_at_settled_batch": settled})


if __name__ == "__main__":
    main()
