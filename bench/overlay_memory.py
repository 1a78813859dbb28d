"""Overlay memory bounded: peak RSS (VmHWM) of ``render_overlay`` (decode in chunks, draw,
encode an H.264 MP4, the result JSON read frame by frame) for a 10-minute video against a
30-second one of the same size, each in a fresh process; a process that only decodes the same
video in the same chunks is the baseline. The render runs as the aggregation stage runs it for
``formats=...,mp4`` (``AggregationStage.render_overlay``): chunks of
``stages.OVERLAY_CHUNK_BYTES``, one FFmpeg thread, one x264 thread.

Videos: the synthetic walking people of ``pose_pipeline.assets.synthetic`` (cached under
bench/out/videos/, shared with bench/memory.py), 640x360 at 15 fps: 450 and 9000 frames. Their
results: each figure's ground-truth box, and a standing 33-joint skeleton in it, as the
blazepose engine would give; every 7th frame the box is a prediction without joints. Chunks of
32 MiB (48 frames). Runs alternate (short, long); medians. Target: the long video's peak within
1.1x of the short one's. The wall times give the render's cost (frames per second on one core).

    python bench/overlay_memory.py [--quick] [--repeats N]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from overlay_speed import standing_joints

from pose_pipeline.results.schema import EngineInfo, Frame, Person, Processing, ResultHeader
from pose_pipeline.results.writers import JsonWriter
from pose_pipeline.jobs.stages import OVERLAY_CHUNK_BYTES
from pose_pipeline.assets.synthetic import Renderer, demo_scene
from pose_pipeline.video import probe

import common

CHUNK_BYTES = OVERLAY_CHUNK_BYTES
# Quick: small chunks, so that the short video too fills several (a video shorter than one
# chunk touches less of the chunk buffer and shows a lower peak, whatever its length).
QUICK_CHUNK_BYTES = 8 * 2**20
PREDICTED_EVERY = 7

# The child: one render (or one plain decode) in a fresh process; prints its peak RSS as JSON.
_CHILD = """
import json, os, sys, time
sys.path.insert(0, {bench!r})
import common
from pose_pipeline.render.overlay import EncoderOptions, render_overlay
from pose_pipeline.video import ChunkDecoder, DecodeOptions, probe
mode, video, result, out, chunk_bytes = sys.argv[1:6]
started = time.perf_counter()
if mode == "overlay":
    stats = render_overlay(video, result, out, chunk_bytes=int(chunk_bytes), encoder=EncoderOptions(threads=1),
                           decode_threads=1)
    frames = stats.frames
else:
    frames = 0
    with ChunkDecoder(video, probe(video), DecodeOptions(chunk_bytes=int(chunk_bytes), threads=1),
                      reuse_buffer=True) as decoder:
        for chunk in decoder:
            frames += len(chunk)
print(json.dumps({{"peak_rss_bytes": common.peak_rss_bytes(os.getpid()), "frames": frames,
                  "wall_s": time.perf_counter() - started}}))
"""


def write_result(video: Path, path: Path) -> Path:
    """The ground truth of the synthetic video as a result JSON, streamed frame by frame."""
    if path.exists():
        return path
    info = probe(video)
    scene = demo_scene(duration_s=info.duration_s, size=(info.width, info.height), fps=info.fps,
                       people=3)
    renderer = Renderer(scene)
    template = standing_joints()
    header = ResultHeader(
        EngineInfo("blazepose", "bench", "synthetic ground truth", True, "blazepose33"), info.video_info(),
        Processing(None, None, info.width, info.height))
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w") as fp:
        writer = JsonWriter(fp)
        writer.begin(header)
        for index in range(info.frame_count):
            people = []
            for truth in renderer.ground_truth(index):
                box = truth.box.astype(np.float32)
                size = box[2:] - box[:2]
                if index % PREDICTED_EVERY == 0:
                    people.append(Person(truth.figure_id, box, 0.9, False))
                else:
                    people.append(Person(truth.figure_id, box, 0.9, True, joints_2d=template * size + box[:2],
                                         joints_confidence=np.ones(33, np.float32)))
            writer.frame(Frame(index, index, index / info.fps, tuple(people)))
        writer.end(())
    partial.replace(path)
    return path


def one_run(mode: str, video: Path, result: Path, out: Path, chunk_bytes: int) -> dict:
    done = subprocess.run([sys.executable, "-c", _CHILD.format(bench=str(Path(__file__).parent)), mode, str(video),
                           str(result), str(out), str(chunk_bytes)],
                          check=True, capture_output=True, text=True, cwd=common.ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    args = common.parse_args(__doc__, "5 s and 60 s 320x180 videos, 8 MiB chunks, one round", default_repeats=2,
                             port=False)
    if args.quick:
        short_s, long_s, size, chunk_bytes = 5, 60, (320, 180), QUICK_CHUNK_BYTES
    else:
        short_s, long_s, size, chunk_bytes = 30, 600, (640, 360), CHUNK_BYTES
    fps = 15.0
    work = common.OUT / "overlay_memory"
    work.mkdir(parents=True, exist_ok=True)
    videos = {"short": common.video(short_s, size, fps), "long": common.video(long_s, size, fps)}
    results = {name: write_result(path, work / f"{path.stem}.result.json") for name, path in videos.items()}
    started = time.perf_counter()
    runs = {f"{mode} {name}": (lambda mode=mode, name=name: one_run(mode, videos[name], results[name],
                                                                    work / f"{name}.mp4", chunk_bytes))
            for mode in ("decode", "overlay") for name in ("short", "long")}
    measured = common.interleaved(runs, args.repeats)
    rows = []
    for key, values in measured.items():
        mode, name = key.split()
        peak = common.median(v["peak_rss_bytes"] for v in values)
        wall = common.median(v["wall_s"] for v in values)
        rows.append({"run": key, "frames": values[0]["frames"], "peak_rss_mib": round(common.mib(peak), 1),
                     "wall_s": round(wall, 1), "fps": round(values[0]["frames"] / wall, 1)})
    peak = {row["run"]: row["peak_rss_mib"] for row in rows}
    ratios = {mode: round(peak[f"{mode} long"] / peak[f"{mode} short"], 3) for mode in ("decode", "overlay")}
    print(common.table(rows))
    print(f"peak RSS, long / short: overlay {ratios['overlay']}x (decode only: {ratios['decode']}x); "
          f"overlay over decode: +{peak['overlay long'] - peak['decode long']:.1f} MiB on the long video")
    common.write_result("overlay_memory", args.quick, {
        "size": size, "fps": fps, "chunk_bytes": chunk_bytes, "rows": rows, "ratios": ratios,
        "raw": measured, "elapsed_s": round(time.perf_counter() - started, 1)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
