"""BVH export (pose_pipeline/results/export/bvh.py): round-trip tolerance, cost, and Blender's importer.

An SMPL track is built by hand (phalp needs a GPU stack): random rotations for every joint in
every frame (the hardest case for Euler continuity), a body model of SMPL's form (rest joints
linear in the betas: the mean skeleton plus a random shape basis) standing in for SMPL's
licence-restricted model, and the camera-frame SMPL joints posed from it by forward
kinematics. The track is exported with the body model's skeleton (``smpl_model``, what phalp
results get) and without (``track_joints``: the skeleton fitted to the joints the result
carries), parsed back with our reader and compared:

- rotations: the largest angle between a joint's rotation and the file's (degrees);
- joints: the largest distance between the camera-frame SMPL joints (in BVH axes) and the
  file's by forward kinematics (mm), over all 24 joints, and over the 14 a phalp result
  carries (``HMR2_SMPL_ROWS``) for the fitted skeleton;
- cost: export time per frame of a track.

Then, where Blender is installed (Debian's ``blender``, headless), its BVH importer reads the
file: bone count, key count, and the largest distance between Blender's bone heads and our
forward kinematics (mm), at a few frames.

    python bench/bvh_export.py [--quick]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

import common

FPS = 30.0
_IMPORT = textwrap.dedent("""
    import builtins, json, sys
    import bpy
    from io_anim_bvh import import_bvh
    if sys.version_info >= (3, 11):  # Debian's Blender 3.4 opens with mode "rU", gone in Python 3.11
        import_bvh.open = lambda f, mode="r", *a, **k: builtins.open(f, mode.replace("U", ""), *a, **k)
    bvh, out, frames = sys.argv[-3], sys.argv[-2], [int(f) for f in sys.argv[-1].split(",")]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_anim.bvh(filepath=bvh, update_scene_fps=True)
    arm = next(o for o in bpy.context.scene.objects if o.type == "ARMATURE")
    action = arm.animation_data.action
    report = {"bones": len(arm.data.bones), "keys": max(len(c.keyframe_points) for c in action.fcurves),
              "version": bpy.app.version_string, "heads": {}}
    for f in frames:
        bpy.context.scene.frame_set(f)
        report["heads"][str(f)] = {b.name: list(arm.matrix_world @ b.head) for b in arm.pose.bones}
    json.dump(report, open(out, "w"))
""")


def track(frames: int, seed: int = 0):
    from pose_pipeline.results.export.skeleton import (HMR2_SMPL_ROWS, forward_kinematics, mean_rest_joints, offsets,
                                                       smpl_rotvecs)
    from pose_pipeline.results.schema import (BodyModel, CameraModel, EngineInfo, Frame, Person, Processing,
                                              ResultHeader, SmplParams, TrackingResult, VideoInfo, summarize_tracks)

    rng = np.random.default_rng(seed)
    model = BodyModel("smpl", mean_rest_joints() + [0.0, -0.23, 0.02], rng.normal(0, 0.01, (24, 3, 10)), 6890)
    betas = rng.normal(0, 1, 10).astype(np.float32)
    rest = model.rest_joints_for(betas)
    people, truth = [], []
    for i in range(frames):
        rotvecs = Rotation.random(24, random_state=rng).as_rotvec().astype(np.float32)
        translation = (np.array([0.3, 0.2, 30.0]) + rng.normal(0, 0.2, 3)).astype(np.float32)
        fk = forward_kinematics(offsets(rest), smpl_rotvecs(rotvecs[0], rotvecs[1:])[None].astype(np.float64))[0]
        joints = rng.normal(0, 0.3, (44, 3))
        for joint, row in HMR2_SMPL_ROWS.items():
            joints[row] = fk[joint] + rest[0]
        truth.append(fk + rest[0] + translation)
        people.append(Frame(i, i, i / FPS, (Person(1, np.zeros(4, np.float32), 1.0, True,
                                                    SmplParams(rotvecs[0], rotvecs[1:], betas), translation,
                                                    joints.astype(np.float32)),)))
    header = ResultHeader(EngineInfo("phalp", "bench", "hand-built", True, "hmr2_openpose25_extra19"),
                          VideoInfo(1920, 1080, FPS, frames / FPS, frames, 0, "h264", "mp4"),
                          Processing(None, None, 1920, 1080), CameraModel(37500.0, (960.0, 540.0)), body_model=model)
    result = TrackingResult(header, tuple(people), summarize_tracks(people))
    return result, np.stack(truth)


def round_trip(result, truth: np.ndarray, with_model: bool) -> dict:
    from dataclasses import replace

    from pose_pipeline.results.export.bvh import OPENCV_TO_BVH, parse_bvh, track_bvh
    from pose_pipeline.results.export.skeleton import HMR2_SMPL_ROWS, SMPL_JOINT_NAMES, smpl_rotvecs

    if not with_model:
        result = replace(result, header=replace(result.header, body_model=None))
    started = time.perf_counter()
    text = track_bvh(result, 1)
    seconds = time.perf_counter() - started
    bvh = parse_bvh(text)
    index = [[j.name for j in bvh.joints].index(n) for n in SMPL_JOINT_NAMES]
    people = [f.people[0] for f in result.frames]
    expected = Rotation.from_rotvec(np.stack([smpl_rotvecs(p.smpl.global_orient, p.smpl.body_pose)
                                              for p in people]).reshape(-1, 3).astype(np.float64))
    matrices = expected.as_matrix().reshape(len(people), 24, 3, 3)
    matrices[:, 0] = OPENCV_TO_BVH @ matrices[:, 0]
    got = bvh.local_rotations()[:, index]
    angle = Rotation.from_matrix(got.reshape(-1, 3, 3)).inv() * Rotation.from_matrix(matrices.reshape(-1, 3, 3))
    error = np.linalg.norm(bvh.positions()[:, index] - truth @ OPENCV_TO_BVH.T, axis=-1)
    carried = sorted(HMR2_SMPL_ROWS)
    return {"skeleton": "smpl_model" if with_model else "track_joints", "frames": len(people),
            "rotation_max_deg": float(np.degrees(angle.magnitude().max())),
            "joints_max_mm": float(error.max() * 1000), "carried_joints_max_mm": float(error[:, carried].max() * 1000),
            "export_ms_per_frame": seconds * 1000 / len(people), "text": text}


def blender_import(text: str, positions: np.ndarray) -> dict:
    blender = shutil.which("blender")
    if blender is None:
        return {"blender": "not installed"}
    from pose_pipeline.results.export.bvh import parse_bvh
    from pose_pipeline.results.export.recipes import BVH_TO_BLENDER

    with tempfile.TemporaryDirectory() as folder:
        path, script, out = Path(folder, "track.bvh"), Path(folder, "import.py"), Path(folder, "report.json")
        path.write_text(text)
        script.write_text(_IMPORT)
        frames = [1, len(positions) // 2, len(positions)]
        started = time.perf_counter()
        run = subprocess.run([blender, "-b", "--factory-startup", "--python-exit-code", "1", "--python", str(script),
                              "--", str(path), str(out), ",".join(map(str, frames))], capture_output=True, text=True,
                             timeout=600)
        seconds = time.perf_counter() - started
        if run.returncode != 0:
            return {"blender": "failed", "stderr": run.stderr[-2000:]}
        report = json.loads(out.read_text())
    names = [j.name for j in parse_bvh(text).joints]
    ours = positions @ BVH_TO_BLENDER.T
    error = max(np.abs(np.array(heads[n]) - ours[int(f) - 1, names.index(n)]).max()
                for f, heads in report["heads"].items() for n in names)
    return {"blender": report["version"], "bones": report["bones"], "keys": report["keys"],
            "bone_heads_max_mm": float(error * 1000), "import_s": seconds}


def main() -> None:
    args = common.parse_args(__doc__, "300 frames instead of 3000", default_repeats=1, port=False)
    from pose_pipeline.results.export.bvh import parse_bvh

    result, truth = track(300 if args.quick else 3000)
    rows = [round_trip(result, truth, with_model) for with_model in (True, False)]
    texts = [row.pop("text") for row in rows]
    imported = blender_import(texts[0], parse_bvh(texts[0]).positions())
    print(common.table(rows))
    print(json.dumps(imported, indent=1))
    common.write_result("bvh_export", args.quick, {"fps": FPS, "round_trip": rows, "blender": imported})


if __name__ == "__main__":
    main()
