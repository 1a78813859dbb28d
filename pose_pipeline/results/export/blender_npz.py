"""Blender recipe: one track of an NPZ result as animated empties, one per joint.

Run with Blender's own Python (it needs only ``bpy`` and numpy, not this package):

    blender -b --python pose_pipeline/results/export/blender_npz.py -- result.npz --track 1 --out track.blend

The joints keep their OpenCV camera coordinates (phalp: ``translation + joints_3d``;
blazepose: ``joints_3d`` around the hips) under one parent Empty rotated by −90° about x,
which maps OpenCV (x right, y down, z forward) to Blender (z up): ``(x, y, z) -> (x, z, −y)``.
Result frame ``i`` is Blender frame ``i + 1``. For phalp a camera at the origin looking along
+y gets the result's focal length, so a render lines up with the video.
"""

from __future__ import annotations

import json
import math
import sys

import bpy
import numpy as np


def build(npz_path: str, track_id: int) -> dict:
    """Add the track to the current scene; returns what was made (names, frames)."""
    with np.load(npz_path, allow_pickle=False) as data:
        header = json.loads(str(data["meta"]))
        prefix = f"track_{track_id}."
        frames = data[prefix + "frame"]
        joints = data[prefix + "joints_3d"].astype(np.float64)
        if prefix + "translation" in data:
            joints = joints + data[prefix + "translation"].astype(np.float64)[:, None, :]
    scene = bpy.context.scene
    video, processing = header["video"], header["processing"]
    fps = min(processing["fps"], video["fps"]) if processing["fps"] else video["fps"]
    scene.render.fps, scene.render.fps_base = round(fps * 1000), 1000.0  # fractional rates (29.97)
    scene.frame_start, scene.frame_end = int(frames[0]) + 1, int(frames[-1]) + 1

    root = bpy.data.objects.new(f"track_{track_id}", None)
    root.rotation_euler = (-math.pi / 2, 0.0, 0.0)  # OpenCV camera frame -> Blender
    scene.collection.objects.link(root)
    names = []
    for k in range(joints.shape[1]):
        empty = bpy.data.objects.new(f"track_{track_id}.joint_{k:02d}", None)
        empty.empty_display_size = 0.03
        empty.parent = root
        scene.collection.objects.link(empty)
        for frame, position in zip(frames, joints[:, k]):
            if np.isnan(position).any():  # coasting without joints: no key, Blender holds
                continue
            empty.location = tuple(position)
            empty.keyframe_insert("location", frame=int(frame) + 1)
        names.append(empty.name)

    camera = header.get("camera")
    if camera:
        cam = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
        cam.rotation_euler = (math.pi / 2, 0.0, 0.0)  # looks along +y, up +z
        cam.data.sensor_fit, cam.data.sensor_width = "HORIZONTAL", 36.0
        cam.data.lens = camera["focal_length_px"] * 36.0 / video["width"]
        cam.data.clip_end = 1000.0  # depths are tens of metres
        scene.render.resolution_x, scene.render.resolution_y = video["width"], video["height"]
        scene.collection.objects.link(cam)
        scene.camera = cam
    return {"root": root.name, "joints": names, "frame_start": scene.frame_start, "frame_end": scene.frame_end}


def main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="blender -b --python blender_npz.py --")
    parser.add_argument("npz")
    parser.add_argument("--track", type=int, required=True)
    parser.add_argument("--out", help="save the scene as this .blend file")
    args = parser.parse_args(argv)
    made = build(args.npz, args.track)
    if args.out:
        bpy.ops.wm.save_as_mainfile(filepath=args.out)
    print(json.dumps(made))


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else [])
