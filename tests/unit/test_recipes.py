"""The Python of docs/result-schema.md, as written there: every ```python block runs, in a
folder holding what the blocks name (result.json and result.npz of an SMPL result with
vertices, track_1.bvh). Blocks that use Blender's modules run in one Blender session, in
order (``blender -b``, where Debian's package is installed); the others each in a fresh
interpreter of this venv. Then what they made is checked against the result."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pose_pipeline.engines.phalp.convert import full_frame_camera, project
from pose_pipeline.results.export.bvh import track_bvh
from pose_pipeline.results.export.skeleton import HMR2_SMPL_ROWS
from pose_pipeline.results.schema import (
    Frame,
    Person,
    SmplParams,
    TrackingResult,
)
from pose_pipeline.results.writers import ResultFiles

from support.smpl_standin import BODY_MODEL, FACES_ARRAY, VERTICES, pose_of, posed
from support.results import result_of, smpl_header

DOC = Path(__file__).parents[2] / "docs" / "result-schema.md"
BLENDER = shutil.which("blender")
FPS, FRAMES = 25.0, 12
_BLENDER_MODULES = re.compile(r"^\s*(import|from)\s[^\n]*\b(bpy|io_anim_bvh)\b", re.M)


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(), re.M | re.S)


def smpl_result() -> TrackingResult:
    """Track 1 in every frame, track 2 from frame 3: phalp-like people of the stand-in model."""
    camera = full_frame_camera(720, 1280)
    frames = []
    for i in range(FRAMES):
        people = []
        for tid in (1, 2) if i >= 3 else (1,):
            rotvecs, betas = pose_of(tid, i, FPS)
            joints, vertices = posed(BODY_MODEL, rotvecs, betas)
            translation = np.array([0.4 * tid - 0.6, 0.2, 30.0 + tid]) - joints[0]
            rows = np.random.default_rng([tid, i]).normal(0, 0.3, (44, 3))
            for joint, row in HMR2_SMPL_ROWS.items():
                rows[row] = joints[joint]
            people.append(Person(tid, np.array([100, 100, 300, 600], np.float32), 0.9, True,
                                 SmplParams(*(rotvecs[:1].reshape(3), rotvecs[1:]), betas.astype(np.float32)),
                                 translation.astype(np.float32), rows.astype(np.float32),
                                 project(translation + rows, camera).astype(np.float32), None,
                                 vertices.astype(np.float16)))
        frames.append(Frame(i, i, i / FPS, tuple(people)))
    return result_of(smpl_header(1280, 720, FRAMES, FPS, camera, body_model=BODY_MODEL, include=("vertices",)), frames)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("recipes")
    result = smpl_result()
    files = ResultFiles(folder, ["json", "npz"])
    files.begin(result.header)
    for frame in result.frames:
        files.frame(frame)
    files.end(result.tracks)
    (folder / "track_1.bvh").write_text(track_bvh(result, 1))
    return folder


def test_the_page_has_the_recipes_python():
    blocks = python_blocks()
    assert len(blocks) >= 6
    assert sum(bool(_BLENDER_MODULES.search(b)) for b in blocks) >= 3


@pytest.mark.slow
def test_every_python_block_outside_blender_runs_and_makes_what_it_says(folder):
    for block in python_blocks():
        if _BLENDER_MODULES.search(block):
            continue
        run = subprocess.run([sys.executable, "-c", block], cwd=folder, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, block + run.stderr[-3000:]
    result = smpl_result()
    people = [f.people[0] for f in result.frames]
    camera_joints = np.stack([p.translation + p.joints_3d.astype(np.float64) for p in people])
    # three.js skeleton: camera joints in (x, -y, -z)
    track = json.loads((folder / "track_1.json").read_text())
    assert np.abs(np.array(track["joints"]) - camera_joints * [1, -1, -1]).max() < 1e-4
    # three.js mesh: camera vertices in (x, -y, -z), float32, and the faces as uint32
    mesh = np.fromfile(folder / "track_1.vertices.f32", dtype=np.float32).reshape(FRAMES, VERTICES, 3)
    truth = np.stack([p.translation + p.vertices.astype(np.float32) for p in people]) * [1, -1, -1]
    assert np.abs(mesh - truth).max() < 1e-5
    assert np.array_equal(np.fromfile(folder / "faces.u32", dtype=np.uint32).reshape(-1, 3), FACES_ARRAY)


_REPORT = textwrap.dedent("""
    import json
    import bpy
    scene = bpy.context.scene
    arm = next(o for o in scene.objects if o.type == "ARMATURE")
    report = {"bones": len(arm.data.bones), "objects": sorted(o.name for o in scene.objects), "empties": {}}
    for f in (1, 7):
        scene.frame_set(f)
        joints = sorted((o for o in scene.objects if o.name.startswith("joint_")), key=lambda o: o.name)
        report["empties"][str(f)] = [list(o.matrix_world.translation) for o in joints]
        report.setdefault("pelvis", {})[str(f)] = list(arm.matrix_world @ arm.pose.bones["pelvis"].head)
    json.dump(report, open("blender-report.json", "w"))
""")


@pytest.mark.slow
@pytest.mark.skipif(BLENDER is None, reason="blender is not installed (apt-get install blender)")
def test_the_blender_blocks_run_in_one_blender_session(folder):
    blender = [b for b in python_blocks() if _BLENDER_MODULES.search(b)]
    script = folder / "recipes-in-blender.py"
    script.write_text("\n\n".join([*blender, _REPORT]))
    run = subprocess.run([BLENDER, "-b", "--factory-startup", "--python-exit-code", "1", "--python", str(script)],
                         cwd=folder, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((folder / "blender-report.json").read_text())
    assert report["bones"] == 24 and {"pose_root", "cam", "track_1"} <= set(report["objects"])
    result = smpl_result()
    for f in (1, 7):
        p = result.frames[f - 1].people[0]
        empties = np.array(report["empties"][str(f)])
        camera = p.translation + p.joints_3d.astype(np.float64)
        assert empties.shape == (44, 3)
        assert np.abs(empties - camera @ np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]]).T).max() < 1e-4
        # the imported BVH's pelvis is where the NPZ's row 8 is
        assert np.abs(np.array(report["pelvis"][str(f)]) - empties[HMR2_SMPL_ROWS[0]]).max() < 1e-4
