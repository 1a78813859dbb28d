"""Overlay drawing speed: milliseconds to draw one 1280x720 frame with numpy
(``overlay_draw.FramePainter``: boxes, labels, 33-joint skeletons), for 1, 5 and 20 people,
and the cost of the whole overlay video per frame (draw + RGB to YUV + libx264 veryfast,
``OverlayWriter``) against the same encoder with nobody to draw (the baseline).

People are standing stick figures of 33 BlazePose joints, 160x400 px boxes at random places
(half of them detected, half predicted boxes without joints beyond the first); the pictures
are a real clip's frames (carphone, scaled by FFmpeg to 720p), so that the encoder sees video,
not flat colour. Runs alternate (baseline, overlay, ...); medians.

    python bench/overlay_speed.py [--quick] [--repeats N]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from pose_pipeline.assets.clips import CARPHONE, clip
from pose_pipeline.engines.blazepose.landmarks import JOINT_NAMES
from pose_pipeline.render.overlay import OverlayWriter
from pose_pipeline.render.painter import FramePainter
from pose_pipeline.results.schema import EngineInfo, Frame, Person, Processing, ResultHeader, VideoInfo

import common

SIZE = (1280, 720)
BOX = (160.0, 400.0)
# A standing person, joints as fractions of the box (x from the left, y from the top).
_STANDING = {
    "nose": (0.50, 0.06), "eye_inner": (0.03, 0.05), "eye": (0.05, 0.05), "eye_outer": (0.07, 0.05),
    "ear": (0.10, 0.07), "mouth": (0.03, 0.09), "shoulder": (0.22, 0.20), "elbow": (0.30, 0.36),
    "wrist": (0.32, 0.50), "pinky": (0.33, 0.54), "index": (0.31, 0.55), "thumb": (0.29, 0.53),
    "hip": (0.14, 0.52), "knee": (0.15, 0.72), "ankle": (0.16, 0.92), "heel": (0.15, 0.95),
    "foot_index": (0.20, 0.98),
}


def standing_joints() -> np.ndarray:
    """(33, 2) fractions of the box, the person's left on the image's right."""
    joints = []
    for name in JOINT_NAMES:
        if name == "nose":
            joints.append(_STANDING["nose"])
            continue
        left = "left" in name.split("_")
        part = "_".join(word for word in name.split("_") if word not in ("left", "right"))
        dx, y = _STANDING[part]
        joints.append((0.5 + dx if left else 0.5 - dx, y))
    return np.array(joints, dtype=np.float32)


def scene(people: int, rng: np.random.Generator) -> Frame:
    template = standing_joints()
    persons = []
    for k in range(people):
        x, y = rng.uniform(0, SIZE[0] - BOX[0]), rng.uniform(0, SIZE[1] - BOX[1])
        box = np.array([x, y, x + BOX[0], y + BOX[1]], dtype=np.float32)
        detected = k % 2 == 0
        joints = (template * BOX + [x, y]).astype(np.float32)
        persons.append(Person(k + 1, box, 0.9, detected, joints_2d=joints if detected else None,
                              joints_confidence=np.ones(33, np.float32) if detected else None))
    return Frame(0, 0, 0.0, tuple(persons))


def header() -> ResultHeader:
    engine = EngineInfo("blazepose", "bench", "stick figures", True, "blazepose33")
    return ResultHeader(engine, VideoInfo(*SIZE, 30.0, 10.0, 300, 0, "h264", "mp4"),
                        Processing(None, None, *SIZE))


def pictures(count: int) -> np.ndarray:
    import av

    with av.open(str(clip(CARPHONE))) as container:
        frames = [f.to_ndarray(width=SIZE[0], height=SIZE[1], format="rgb24")
                  for _, f in zip(range(count), container.decode(video=0), strict=False)]
    return np.stack(frames)


def draw_ms(painter: FramePainter, frame: Frame, images: np.ndarray) -> float:
    scratch = images[0].copy()
    started = time.perf_counter()
    for image in images:
        scratch[...] = image
        painter.paint(scratch, frame)
    copy_started = time.perf_counter()
    for image in images:  # the copy alone, subtracted: it is not drawing
        scratch[...] = image
    ended = time.perf_counter()
    return ((copy_started - started) - (ended - copy_started)) / len(images) * 1000


def encode_ms(frame: Frame, images: np.ndarray, directory: Path) -> float:
    frames = [Frame(i, i, i / 30.0, frame.people) for i in range(len(images))]
    started = time.perf_counter()
    with OverlayWriter(directory / "bench.mp4", header()) as writer:
        writer.write(images, frames)
    return (time.perf_counter() - started) / len(images) * 1000


def main() -> int:
    args = common.parse_args(__doc__, "60 frames, one round", default_repeats=3, port=False)
    count = 60 if args.quick else 240
    images = pictures(count)
    painter = FramePainter(header())
    rng = np.random.default_rng(0)
    scenes = {people: scene(people, rng) for people in (1, 5, 20)}
    painter.paint(images[0].copy(), scenes[20])  # warm-up (glyph cache)
    rows, raw = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for people, frame in scenes.items():
            runs = common.interleaved({
                "baseline": lambda: encode_ms(Frame(0, 0, 0.0), images, Path(tmp)),
                "overlay": lambda frame=frame: encode_ms(frame, images, Path(tmp)),
                "draw": lambda frame=frame: draw_ms(painter, frame, images),
            }, args.repeats)
            raw[people] = runs
            base, full, draw = (common.median(runs[k]) for k in ("baseline", "overlay", "draw"))
            rows.append({"people": people, "draw_ms": round(draw, 2), "encode_nobody_ms": round(base, 1),
                         "encode_overlay_ms": round(full, 1), "overlay_vs_nobody": round(full / base, 3)})
    print(common.table(rows))
    common.write_result("overlay_speed", args.quick, {"size": SIZE, "frames": count, "rows": rows, "raw": raw})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
