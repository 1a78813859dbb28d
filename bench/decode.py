"""Decode benchmark: the project's ChunkDecoder against a plain PyAV decode loop.

On a generated 1080p H.264 video (60 s in full mode), frames/s of:

- ``full``:   ChunkDecoder at source size vs a plain PyAV loop (``to_ndarray("rgb24")``);
- ``resize``: ChunkDecoder with ``max_side=1280`` (the service default) vs the plain loop
  plus an OpenCV ``INTER_AREA`` resize (numpy nearest-neighbour if OpenCV is not installed;
  ``--quick`` times both);
- ``resize+fps``: ``max_side=1280, fps=10`` vs the plain loop that converts and resizes only
  the frames of each 1/10 s slot.

Both sides use FFmpeg's automatic threading (``thread_type="AUTO"``), as a plain loop that
cares about speed does. Runs alternate (ours, plain, ours, plain, ...); medians are reported.
Targets: full >= 0.9x the plain loop; with a resize, faster than the plain loop + resize.

    python bench/decode.py [--quick] [--repeats N]
"""

from __future__ import annotations

import math
import resource
import time

import av
import numpy as np

from pose_pipeline.video import ChunkDecoder, DecodeOptions, probe

import common  # noqa: F401  (puts the repository on sys.path)

CHUNK_BYTES = 64 * 2**20  # serve_config.cpu.yaml's decode.chunk_bytes


def _cpu_s() -> float:
    """CPU seconds of this process, FFmpeg's threads included: less sensitive than wall
    time to other work on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(run):
    """(frames, wall seconds, CPU seconds) of ``run()``."""
    cpu = _cpu_s()
    frames, seconds = run()
    return frames, seconds, _cpu_s() - cpu


def ours(path, max_side=None, fps=None) -> tuple[int, float]:
    started = time.perf_counter()
    video = probe(path)
    frames = 0
    with ChunkDecoder(path, video, DecodeOptions(chunk_bytes=CHUNK_BYTES, max_side=max_side, fps=fps),
                      reuse_buffer=True) as decoder:  # as the service and the CLI decode
        for chunk in decoder:
            frames += len(chunk)
    return frames, time.perf_counter() - started


def _target_size(width: int, height: int, max_side: int | None) -> tuple[int, int] | None:
    if not max_side or max(width, height) <= max_side:
        return None
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resize_cv2(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _resize_numpy(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = image.shape[:2]
    rows = (np.arange(size[1]) * height // size[1])
    cols = (np.arange(size[0]) * width // size[0])
    return np.ascontiguousarray(image[rows][:, cols])


def plain(path, max_side=None, fps=None, resize=_resize_cv2) -> tuple[int, float]:
    """What one writes without the project: decode, convert to RGB, resize if asked."""
    started = time.perf_counter()
    frames = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = stream.start_time or 0
        size = _target_size(stream.codec_context.width, stream.codec_context.height, max_side)
        last_slot = -1
        for frame in container.decode(stream):
            if fps:
                slot = math.floor(float((frame.pts - start) * stream.time_base) * fps + 1e-6)
                if slot <= last_slot:
                    continue
                last_slot = slot
            image = frame.to_ndarray(format="rgb24")
            if size:
                image = resize(image, size)
            frames += 1
    return frames, time.perf_counter() - started


def main() -> int:
    args = common.parse_args(__doc__, "a 3 s 1080p video, one round", port=False)
    repeats = args.repeats
    path = common.video(3 if args.quick else 60, (1920, 1080))
    info = probe(path)
    try:
        import cv2  # noqa: F401
        resize_name, resize = "opencv INTER_AREA", _resize_cv2
    except ImportError:  # OpenCV is not a dependency of the project
        resize_name, resize = "numpy nearest (no OpenCV installed)", _resize_numpy
    cases = {
        "full": ({}, {}),
        "resize": ({"max_side": 1280}, {"max_side": 1280, "resize": resize}),
        "resize+fps": ({"max_side": 1280, "fps": 10.0}, {"max_side": 1280, "fps": 10.0, "resize": resize}),
    }
    rows, raw = [], {}
    for name, (our_kwargs, plain_kwargs) in cases.items():
        runs = {"ours": lambda kw=our_kwargs: timed(lambda: ours(path, **kw)),
                "plain": lambda kw=plain_kwargs: timed(lambda: plain(path, **kw))}
        if name == "resize" and resize is _resize_cv2 and args.quick:  # context: the cheapest numpy resize
            runs["plain+numpy"] = lambda: timed(lambda: plain(path, max_side=1280, resize=_resize_numpy))
        results = common.interleaved(runs, repeats)
        raw[name] = results
        counts = {k: {f for f, _, _ in v} for k, v in results.items()}
        fps = {k: common.median(f / s for f, s, _ in v) for k, v in results.items()}
        cpu_ms = {k: common.median(1e3 * c / f for f, _, c in v) for k, v in results.items()}
        row = {"case": name, "frames": sorted(counts["ours"])[0], "ours_fps": fps["ours"], "plain_fps": fps["plain"],
               "ratio": fps["ours"] / fps["plain"], "ours_cpu_ms/frame": cpu_ms["ours"],
               "plain_cpu_ms/frame": cpu_ms["plain"], "cpu_ratio": cpu_ms["plain"] / cpu_ms["ours"]}
        if "plain+numpy" in fps:
            row["plain_numpy_fps"] = fps["plain+numpy"]
            row["ratio_vs_numpy"] = fps["ours"] / fps["plain+numpy"]
        if counts["ours"] != counts["plain"]:
            row["note"] = f"frame counts differ: {counts}"
        rows.append(row)
    targets = {"full": rows[0]["ratio"] >= 0.9, "resize": rows[1]["ratio"] > 1.0, "resize+fps": rows[2]["ratio"] > 1.0}
    print(f"decode: {path.name}: {info.width}x{info.height}, {info.duration_s:.1f} s, {info.frame_count} frames; "
          f"baseline resize: {resize_name}; medians of {repeats} interleaved rounds")
    print(common.table(rows, ["case", "frames", "ours_fps", "plain_fps", "ratio", "plain_numpy_fps",
                              "ratio_vs_numpy", "ours_cpu_ms/frame", "plain_cpu_ms/frame", "cpu_ratio", "note"]))
    print("ratio: ours fps / plain fps (wall); cpu_ratio: plain CPU per frame / ours (> 1: ours cheaper)")
    print("targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in targets.items()))
    common.write_result("decode", args.quick, {
        "video": {"path": path.name, **info.to_dict()}, "baseline_resize": resize_name, "repeats": repeats,
        "rows": rows, "targets_met": targets,
        "raw": {case: {k: [{"frames": f, "seconds": s, "cpu_s": c} for f, s, c in v] for k, v in r.items()}
                for case, r in raw.items()},
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
