"""GPU smoke benchmark of the phalp engine against upstream track.py, on one video.

Needs a GPU machine with the extra installed (cluster/docker/gpu.Dockerfile) and the
weights present. Prints, for our engine: fps, seconds per stage (decode, detect, hmr2,
associate), peak GPU memory; for upstream track.py (rendering off) on the same video:
wall time and fps; and the ratio, measured in the same run.

    python bench/gpu_smoke.py VIDEO --track-py /path/to/4D-Humans/track.py [--max-side 1280]
    python bench/gpu_smoke.py VIDEO --random-weights /tmp/phalp-home --track-py .../track.py

``--random-weights HOME`` needs no weights: it writes the phalp tests' random weights in
upstream's formats and cache layout under HOME (tests/phalp_fixtures/weights.py, about
3.4 GB, once) and points both sides at them (upstream through ``HOME``): speed and memory
are those of the real networks, the results are meaningless. The machine needs the stack of
cluster/docker/gpu.Dockerfile (CUDA torch, detectron2 and neural_renderer compiled); no
package registry is needed once that is there. The random weights cover the light detector
only (Mask R-CNN RegNetY, the default with ``--random-weights``); ViTDet-H needs its real file.

The deployed-service path (HTTP through Serve) is not measured here: it adds decode and
transfer around the same engine calls; run the service's own load test for it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def run_engine(video: str, options: dict, max_side: int | None, chunk_mib: int) -> dict:
    import torch

    from pose_pipeline.engines.base import VideoSpec
    from pose_pipeline.engines.phalp import PhalpEngine
    from pose_pipeline.video import ChunkDecoder, DecodeOptions, probe

    started = time.perf_counter()
    engine = PhalpEngine(**options)
    load_s = time.perf_counter() - started
    info = probe(video)
    decode = DecodeOptions(max_side=max_side, chunk_bytes=chunk_mib * 1024 * 1024)
    width, height = decode.frame_size(info)
    session = engine.open(VideoSpec(width, height, decode.output_fps(info)))
    torch.cuda.reset_peak_memory_stats()
    frames = people = 0
    decode_s = 0.0
    started = time.perf_counter()
    with ChunkDecoder(video, info, decode) as decoder:
        while not decoder.finished:
            t0 = time.perf_counter()
            chunk = decoder.next_chunk()
            decode_s += time.perf_counter() - t0
            out = session.process(chunk)
            frames += len(chunk)
            people += sum(len(f.people) for f in out.frames) + len(out.corrections)
    torch.cuda.synchronize()
    total_s = time.perf_counter() - started
    return {"frames": frames, "people_records": people, "model_load_s": round(load_s, 2),
            "total_s": round(total_s, 2), "fps": round(frames / total_s, 3),
            "stage_s": {"decode": round(decode_s, 2), **{k: round(v, 2) for k, v in session.stage_seconds.items()}},
            "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2 ** 20, 1),
            "peak_gpu_reserved_mib": round(torch.cuda.max_memory_reserved() / 2 ** 20, 1),
            "hmr2_batches": engine.last_batch_stats["hmr2"].batch_sizes[-5:]}


def run_upstream(video: str, track_py: str, frames: int, home: str | None, detector: str) -> dict:
    env = dict(os.environ)
    if home:  # upstream reads its weights from $HOME/.cache; its checkpoints need weights_only=False
        env.update(HOME=home, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, track_py, f"video.source={video}", f"video.output_dir={out}",
                   "render.enable=False", f"video.end_frame={max(frames, 1300)}", f"phalp.detector={detector}"]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        total_s = time.perf_counter() - started
    if result.returncode != 0:
        return {"error": result.stderr[-2000:]}
    return {"total_s": round(total_s, 2), "fps": round(frames / total_s, 3),
            "note": "includes model load and JPEG extraction, as a user of track.py sees it"}


def random_weights(home: str) -> dict:
    """Engine options for the tests' random weights under ``home`` (written if absent)."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from phalp_fixtures.weights import UpstreamCache, write_cache

    cache = UpstreamCache(Path(home))
    if not (cache.weights_dir / "4DHumans/hmr2_data.tar.gz").is_file():
        cache = write_cache(Path(home))
    return {"weights_dir": str(cache.weights_dir), "detector_cache": str(cache.detector_cache)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video")
    parser.add_argument("--track-py", help="4D-Humans track.py for the baseline (skipped if absent)")
    parser.add_argument("--max-side", type=int, default=None)
    parser.add_argument("--chunk-mib", type=int, default=256)
    parser.add_argument("--options", default="{}", help="engine options as JSON")
    parser.add_argument("--random-weights", metavar="HOME", help="write and use random weights under HOME")
    parser.add_argument("--detector", choices=["vitdet", "maskrcnn"], help="default: vitdet, or maskrcnn "
                        "with --random-weights")
    args = parser.parse_args()
    args.detector = args.detector or ("maskrcnn" if args.random_weights else "vitdet")
    options = {"detector": args.detector, **json.loads(args.options)}
    if args.random_weights:
        options.update(random_weights(args.random_weights))
    ours = run_engine(args.video, options, args.max_side, args.chunk_mib)
    report = {"engine": ours, "options": options}
    if args.track_py:
        upstream = run_upstream(args.video, args.track_py, ours["frames"], args.random_weights, args.detector)
        report["upstream_track_py"] = upstream
        if "fps" in upstream:
            report["speedup_vs_upstream"] = round(ours["fps"] / upstream["fps"], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
