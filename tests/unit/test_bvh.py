"""BVH export (pose_pipeline/results/export/): round trips through our reader (rotations as matrices,
joint positions by forward kinematics), the rest skeleton from the engine's model or from the
track's own joints, axes and root placement, Euler continuity, the zip; and, where Blender is
installed (Debian: ``apt-get install blender``), Blender's own BVH importer and the NPZ recipe.

SMPL results are built by hand: random valid rotations, and a body model of SMPL's form (rest
joints linear in the betas) standing in for SMPL's licence-restricted model files; the joints
of ``hmr2_openpose25_extra19`` rows that are SMPL joints are posed from it by forward kinematics,
as the engine's SMPL layer poses them."""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pose_pipeline.errors import InvalidOption
from pose_pipeline.results.export import recipes
from pose_pipeline.results.export.bvh import EULER_ORDERS, OPENCV_TO_BVH, bvh_zip, parse_bvh, result_bvh, track_bvh
from pose_pipeline.results.export.skeleton import (
    HMR2_SMPL_ROWS,
    SMPL_JOINT_NAMES,
    SMPL_PARENTS,
    fit_offsets,
    forward_kinematics,
    mean_rest_joints,
    offsets,
    smpl_rotvecs,
)
from pose_pipeline.results.schema import (
    CameraModel,
    EngineInfo,
    Frame,
    Person,
    Processing,
    ResultHeader,
    SmplParams,
    TrackingResult,
    VideoInfo,
    summarize_tracks,
)
from pose_pipeline.results.writers import NpzWriter, write_result
from support.results import result_of, smpl_header

FPS = 30.0
_rng = np.random.default_rng(7)
TEMPLATE = mean_rest_joints() + np.array([0.0, -0.23, 0.02]) + _rng.normal(0, 0.01, (24, 3))
SHAPE = _rng.normal(0, 0.01, (24, 3, 10))
BLENDER = shutil.which("blender")
needs_blender = pytest.mark.skipif(BLENDER is None, reason="blender is not installed (apt-get install blender)")


def model_rest_joints(betas: np.ndarray) -> np.ndarray:
    """Rest joints (24, 3) of the stand-in body model for ``betas``."""
    return TEMPLATE + SHAPE @ np.asarray(betas, dtype=np.float64)


def posed(person: Person) -> np.ndarray:
    """(24, 3) SMPL joints of ``person`` in the camera frame (with translation)."""
    rest = model_rest_joints(person.smpl.betas)
    rotvecs = smpl_rotvecs(person.smpl.global_orient, person.smpl.body_pose)[None].astype(np.float64)
    return forward_kinematics(offsets(rest), rotvecs)[0] + rest[0] + person.translation.astype(np.float64)


def smpl_person(track_id: int, rng: np.random.Generator, betas: np.ndarray, detected: bool = True,
                upright: bool = False) -> Person:
    rotations = Rotation.random(24, random_state=rng).as_rotvec()
    if upright:  # facing the camera: global_orient near (π, 0, 0)
        rotations[0] = (Rotation.from_rotvec([math.pi, 0, 0]) * Rotation.from_rotvec(rng.normal(0, 0.1, 3))).as_rotvec()
    rotations = rotations.astype(np.float32)
    translation = (np.array([0.2 * track_id, 0.3, 30.0]) + rng.normal(0, 0.2, 3)).astype(np.float32)
    person = Person(track_id, np.array([10, 10, 200, 400], np.float32), 0.9, detected,
                    SmplParams(rotations[0], rotations[1:], betas), translation, None, None)
    joints = rng.normal(0, 0.3, (44, 3))  # rows that are mesh vertices: not used by the export
    smpl_joints = posed(person) - person.translation
    for joint, row in HMR2_SMPL_ROWS.items():
        joints[row] = smpl_joints[joint]
    return Person(track_id, person.bbox, person.score, detected, person.smpl, translation,
                  joints.astype(np.float32), rng.uniform(0, 1000, (44, 2)).astype(np.float32))


def smpl_result(frames: int = 24, seed: int = 0, fps: float | None = None) -> TrackingResult:
    """Track 1 in every frame; track 3 from frame 4, absent at 10-11, coasting at 15."""
    rng = np.random.default_rng(seed)
    betas = {1: rng.normal(0, 1, 10).astype(np.float32), 3: rng.normal(0, 1, 10).astype(np.float32)}
    out = []
    for i in range(frames):
        people = [smpl_person(1, rng, betas[1], upright=True)]
        if i >= 4 and i not in (10, 11):
            people.append(smpl_person(3, rng, betas[3], detected=i != 15))
        out.append(Frame(i, i, i / FPS, tuple(people)))
    return result_of(smpl_header(1920, 1080, frames, FPS, CameraModel(5000 / 256 * 1920, (960.0, 540.0)), fps=fps),
                     out)


def bvh_joint_index(bvh) -> list[int]:
    """For each SMPL joint, its index in the parsed file."""
    names = [j.name for j in bvh.joints]
    return [names.index(n) for n in SMPL_JOINT_NAMES]


def camera_joints(result: TrackingResult, track_id: int) -> tuple[list[int], np.ndarray]:
    rows = [(f.index, p) for f in result.frames for p in f.people if p.track_id == track_id]
    return [i for i, _ in rows], np.stack([posed(p) for _, p in rows])


# --- round trips -----------------------------------------------------------------------------


def test_bvh_round_trips_rotations_and_joint_positions_with_the_models_skeleton():
    result = smpl_result()
    bvh = parse_bvh(track_bvh(result, 1, rest_joints=model_rest_joints))
    index = bvh_joint_index(bvh)
    assert [bvh.joints[k].name for k in index] == list(SMPL_JOINT_NAMES)
    assert [bvh.joints[bvh.joints[k].parent].name if bvh.joints[k].parent >= 0 else None for k in index] == \
        [SMPL_JOINT_NAMES[p] if p >= 0 else None for p in SMPL_PARENTS]
    assert len(bvh.motion) == 24 and bvh.frame_time == pytest.approx(1 / FPS)
    # rotations: the root's is C · R(global_orient), every other joint's its body_pose rotation
    people = [f.people[0] for f in result.frames]
    expected = Rotation.from_rotvec(np.stack([smpl_rotvecs(p.smpl.global_orient, p.smpl.body_pose)
                                              for p in people]).reshape(-1, 3)).as_matrix().reshape(24, 24, 3, 3)
    expected[:, 0] = OPENCV_TO_BVH @ expected[:, 0]
    assert np.abs(bvh.local_rotations()[:, index] - expected).max() < 1e-6
    # positions by forward kinematics: the camera-frame joints in BVH axes, to the micrometre
    _, truth = camera_joints(result, 1)
    assert np.abs(bvh.positions()[:, index] - truth @ OPENCV_TO_BVH.T).max() < 1e-5
    # offsets are the model's rest skeleton for the track's betas
    rest = model_rest_joints(people[0].smpl.betas)
    assert np.abs(np.stack([bvh.joints[k].offset for k in index])[1:] - offsets(rest)[1:]).max() < 1e-6


def test_the_root_is_the_pelvis_not_the_translation():
    result = smpl_result()
    bvh = parse_bvh(track_bvh(result, 1, rest_joints=model_rest_joints))
    root = bvh.motion[:, :3]
    people = [f.people[0] for f in result.frames]
    translation = np.stack([p.translation for p in people]).astype(np.float64)
    pelvis = translation + model_rest_joints(people[0].smpl.betas)[0]
    assert np.abs(root - pelvis @ OPENCV_TO_BVH.T).max() < 1e-5
    assert np.abs(root - translation @ OPENCV_TO_BVH.T).min(axis=0).max() > 0.01  # J_0 is not zero
    # Y up, camera looking down −z: people in front of the camera are at negative z, and the
    # upright person facing it has a root rotation near identity
    assert (root[:, 2] < -20).all()
    root_rotation = bvh.local_rotations()[:, bvh_joint_index(bvh)[0]]
    assert Rotation.from_matrix(root_rotation).magnitude().max() < 0.5


def test_without_the_model_the_track_joints_give_the_limbs_and_the_pelvis():
    result = smpl_result()
    bvh = parse_bvh(track_bvh(result, 1))
    index = bvh_joint_index(bvh)
    _, truth = camera_joints(result, 1)
    error = np.abs(bvh.positions()[:, index] - truth @ OPENCV_TO_BVH.T).max(axis=(0, 2))
    rows = sorted(HMR2_SMPL_ROWS)
    assert error[rows].max() < 1e-4  # every SMPL joint the result carries, reproduced
    unseen = [k for k in range(24) if k not in HMR2_SMPL_ROWS]
    assert 0.002 < error[unseen].max() < 0.15  # head, hands, feet, spine: the mean skeleton's
    people = [f.people[0] for f in result.frames]
    pelvis = np.stack([p.translation + p.joints_3d[HMR2_SMPL_ROWS[0]] for p in people]).astype(np.float64)
    assert np.abs(bvh.motion[:, :3] - pelvis @ OPENCV_TO_BVH.T).max() < 1e-5


def test_fitted_offsets_recover_the_limb_bones_exactly():
    rng = np.random.default_rng(3)
    rest = model_rest_joints(rng.normal(0, 1, 10))
    rotvecs = Rotation.random(30 * 24, random_state=rng).as_rotvec().reshape(30, 24, 3)
    joints = np.zeros((30, 44, 3))
    fk = forward_kinematics(offsets(rest), rotvecs) + rest[0]
    for joint, row in HMR2_SMPL_ROWS.items():
        joints[:, row] = fk[:, joint]
    fitted = fit_offsets(rotvecs, joints, offsets(mean_rest_joints()))
    truth = offsets(rest)
    for child in (1, 2, 4, 5, 7, 8, 18, 19, 20, 21):  # bones between two rows
        assert np.abs(fitted[child] - truth[child]).max() < 2e-5, SMPL_JOINT_NAMES[child]  # the ridge: µm
    for leaf in (10, 11, 15, 22, 23):  # no row at their end: the prior's
        assert np.array_equal(fitted[leaf], offsets(mean_rest_joints())[leaf])


def test_absent_frames_hold_the_pose_and_the_manifest_says_which_were_detected():
    result = smpl_result()
    files = result_bvh(result, rest_joints=model_rest_joints)
    assert sorted(files) == [1, 3]
    bvh = parse_bvh(files[3])
    assert len(bvh.motion) == 20  # frames 4-23
    held = bvh.motion[9 - 4]  # absent at 10 and 11: frame 9's pose, held
    assert np.array_equal(bvh.motion[10 - 4], held) and np.array_equal(bvh.motion[11 - 4], held)
    with zipfile.ZipFile(io.BytesIO(bvh_zip(result, rest_joints=model_rest_joints))) as archive:
        assert sorted(archive.namelist()) == ["manifest.json", "track_1.bvh", "track_3.bvh"]
        manifest = json.loads(archive.read("manifest.json"))
        assert archive.read("track_3.bvh").decode() == files[3]
    track = next(t for t in manifest["tracks"] if t["track_id"] == 3)
    assert track["first_frame"] == 4 and track["frames"] == 20 and track["skeleton"] == "smpl_model"
    assert track["detected_frames"] == [i for i in range(4, 24) if i not in (10, 11, 15)]
    assert manifest["frame_time"] == pytest.approx(1 / FPS)


def test_frame_time_is_the_processed_rate():
    assert parse_bvh(track_bvh(smpl_result(fps=12.5), 1)).frame_time == pytest.approx(1 / 12.5)
    assert parse_bvh(track_bvh(smpl_result(fps=60.0), 1)).frame_time == pytest.approx(1 / FPS)  # never above the source


def test_euler_angles_are_continuous_through_full_turns_and_gimbal_lock():
    # a root spinning about the camera's vertical axis (three turns), a knee bending through
    # its order's middle angle (XYZ: y = 90°), and a shoulder tumbling at random
    frames = 180
    t = np.arange(frames) / frames
    spin = Rotation.from_rotvec([math.pi, 0, 0]) * Rotation.from_rotvec(np.outer(6 * math.pi * t, [0, 1, 0]))
    knee = Rotation.from_euler("XYZ", np.stack([0.3 + 0 * t, np.pi * t, 0.2 + 0 * t], axis=1))
    walk = Rotation.from_rotvec(np.cumsum(np.random.default_rng(2).normal(0, 0.15, (frames, 3)), axis=0))
    people = []
    for i in range(frames):
        pose = np.zeros((23, 3), np.float32)
        pose[SMPL_JOINT_NAMES.index("left_knee") - 1] = knee[i].as_rotvec()
        pose[SMPL_JOINT_NAMES.index("right_shoulder") - 1] = walk[i].as_rotvec()
        people.append(Person(1, np.zeros(4, np.float32), 1.0, True,
                             SmplParams(spin[i].as_rotvec().astype(np.float32), pose, np.zeros(10, np.float32)),
                             np.array([0, 0, 10], np.float32), None, None))
    result = TrackingResult(smpl_result().header, tuple(Frame(i, i, i / FPS, (p,)) for i, p in enumerate(people)))
    bvh = parse_bvh(track_bvh(result, 1, rest_joints=model_rest_joints))
    angles = bvh.motion[:, 3:]
    assert np.abs(np.diff(angles, axis=0)).max() < 60.0  # degrees per frame: no 360° wraps, no flips
    root = angles[:, :3]  # YXZ: heading first
    assert abs(root[-1, 0] - root[0, 0]) == pytest.approx(1080.0 * (frames - 1) / frames, abs=0.01)  # 3 turns
    index = bvh_joint_index(bvh)
    knee = 6 + 3 * (index[SMPL_JOINT_NAMES.index("left_knee")] - 1)
    knee_angles = bvh.motion[:, knee:knee + 3]
    assert np.abs(np.diff(knee_angles, axis=0)).max() < 1.01 * 180 / frames  # through y = 90° without a jump
    assert knee_angles[0] == pytest.approx(np.degrees([0.3, 0.0, 0.2]), abs=1e-3)  # float32 input
    assert knee_angles[-1] == pytest.approx(np.degrees([0.3, np.pi * (frames - 1) / frames, 0.2]), abs=1e-3)
    expected = Rotation.from_rotvec(np.stack([smpl_rotvecs(p.smpl.global_orient, p.smpl.body_pose)
                                              for p in people]).reshape(-1, 3)).as_matrix().reshape(frames, 24, 3, 3)
    expected[:, 0] = OPENCV_TO_BVH @ expected[:, 0]
    assert np.abs(bvh.local_rotations()[:, index] - expected).max() < 1e-6


def test_each_joint_uses_its_euler_order():
    text = track_bvh(smpl_result(4), 1)
    for name, order in zip(SMPL_JOINT_NAMES, EULER_ORDERS):
        channels = " ".join(f"{a}rotation" for a in order)
        assert f"{'ROOT' if name == 'pelvis' else 'JOINT'} {name}" in text
        block = text.split(f" {name}\n", 1)[1]
        assert channels in block.split("\n", 4)[2], name
    assert EULER_ORDERS[SMPL_JOINT_NAMES.index("left_knee")] == "XYZ" and EULER_ORDERS[0] == "YXZ"


def test_results_without_smpl_are_refused_naming_the_format():
    header = ResultHeader(EngineInfo("blazepose", "1.0", "BlazePose", True, "blazepose33"),
                          VideoInfo(640, 480, FPS, 1.0, 1, 0, "h264", "mp4"), Processing(None, None, 640, 480))
    person = Person(1, np.zeros(4, np.float32), 0.9, True, None, None, np.zeros((33, 3), np.float32),
                    np.zeros((33, 2), np.float32), np.ones(33, np.float32))
    result = TrackingResult(header, (Frame(0, 0, 0.0, (person,)),))
    for export in (result_bvh, bvh_zip, lambda r: track_bvh(r, 1)):
        with pytest.raises(InvalidOption) as caught:
            export(result)
        assert caught.value.option == "format" and "SMPL" in caught.value.message


def test_the_mean_skeleton_follows_its_documented_fractions():
    rest = mean_rest_joints(2.0)
    joint = {name: rest[k] for k, name in enumerate(SMPL_JOINT_NAMES)}
    assert np.linalg.norm(joint["left_hip"] - joint["left_knee"]) == pytest.approx(0.245 * 2.0)
    assert np.linalg.norm(joint["right_knee"] - joint["right_ankle"]) == pytest.approx(0.246 * 2.0)
    assert np.linalg.norm(joint["left_shoulder"] - joint["left_elbow"]) == pytest.approx(0.186 * 2.0)
    assert np.linalg.norm(joint["right_elbow"] - joint["right_wrist"]) == pytest.approx(0.146 * 2.0)
    assert joint["left_shoulder"][0] - joint["right_shoulder"][0] == pytest.approx(0.259 * 2.0)
    assert joint["left_foot"][1] == pytest.approx(-0.530 * 2.0)  # the floor
    swap = {"left": "right", "right": "left"}
    mirror = [SMPL_JOINT_NAMES.index("_".join([swap.get(w, w) for w in n.split("_")])) for n in SMPL_JOINT_NAMES]
    assert np.allclose(rest[mirror] * [-1, 1, 1], rest)  # mirror-symmetric, x towards the body's left
    assert joint["left_hip"][0] > 0


# --- recipes (Python side) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def npz_path(tmp_path_factory) -> Path:
    result = smpl_result()
    path = tmp_path_factory.mktemp("npz") / "result.npz"
    write_result(result, NpzWriter(str(path)))
    return path


def test_the_threejs_recipe_gives_camera_joints_in_threejs_axes(npz_path):
    result = smpl_result()
    track = recipes.threejs_track(npz_path, 1)
    json.dumps(track, allow_nan=False)
    people = [f.people[0] for f in result.frames]
    expected = np.stack([p.translation + p.joints_3d for p in people]).astype(np.float64)
    assert np.abs(np.array(track["joints"]) - expected * [1, -1, -1]).max() < 1e-4
    assert track["frames"] == list(range(24)) and track["fps"] == FPS and track["in_camera"]
    assert track["camera"]["aspect"] == pytest.approx(1920 / 1080)
    assert track["camera"]["fov_deg"] == pytest.approx(2 * math.degrees(math.atan(540 / (5000 / 256 * 1920))))
    # the same point through the BVH: pelvis bone == joints row 8, both in three.js axes
    bvh = parse_bvh(track_bvh(result, 1))
    pelvis = bvh.positions()[:, bvh_joint_index(bvh)[0]]
    assert np.abs(np.array(track["joints"])[:, HMR2_SMPL_ROWS[0]] - pelvis).max() < 1e-4


def test_the_threejs_recipe_keeps_joint_only_tracks_around_the_hips_with_nulls_where_they_coast(tmp_path):
    header = ResultHeader(EngineInfo("blazepose", "1.0", "BlazePose", True, "blazepose33"),
                          VideoInfo(640, 480, 25.0, 0.12, 3, 0, "h264", "mp4"), Processing(None, None, 640, 480))
    rng = np.random.default_rng(5)
    joints = rng.normal(0, 0.4, (3, 33, 3)).astype(np.float32)

    def person(i: int, detected: bool) -> Person:
        return Person(1, np.array([10, 10, 100, 300], np.float32), 0.9, detected, None, None,
                      joints[i] if detected else None, rng.uniform(0, 400, (33, 2)).astype(np.float32) if detected
                      else None, np.ones(33, np.float32) if detected else None)

    frames = tuple(Frame(i, i, i / 25.0, (person(i, i != 1),)) for i in range(3))
    path = tmp_path / "blazepose.npz"
    writer = NpzWriter(str(path))
    writer.begin(header)
    for frame in frames:
        writer.frame(frame)
    writer.end(summarize_tracks(frames))
    track = recipes.threejs_track(path, 1)
    json.dumps(track, allow_nan=False)
    assert track["joints"][1] is None and not track["in_camera"] and "camera" not in track
    assert np.abs(np.array(track["joints"][2]) - joints[2] * [1, -1, -1]).max() < 1e-4
    assert len(track["edges"]) == len(recipes.EDGES["blazepose33"]) and track["fps"] == 25.0


def test_the_conversions_are_the_documented_rotations():
    point = np.array([1.0, 2.0, 3.0])
    assert recipes.to_threejs(point).tolist() == [1.0, -2.0, -3.0]
    assert recipes.to_blender(point).tolist() == [1.0, 3.0, -2.0]
    # BVH (three.js axes) through Blender's importer lands where the NPZ recipe puts the point
    assert np.allclose(recipes.BVH_TO_BLENDER @ (OPENCV_TO_BVH @ point), recipes.to_blender(point))
    for matrix in (recipes.OPENCV_TO_THREEJS, recipes.OPENCV_TO_BLENDER, recipes.BVH_TO_BLENDER):
        assert np.allclose(matrix @ matrix.T, np.eye(3)) and np.linalg.det(matrix) == pytest.approx(1.0)
    assert np.allclose(recipes.OPENCV_TO_BLENDER, Rotation.from_euler("x", -90, degrees=True).as_matrix())


def test_the_edges_join_the_named_joints():
    from pose_pipeline.engines.blazepose.landmarks import JOINT_NAMES

    pairs = {(JOINT_NAMES[a], JOINT_NAMES[b]) for a, b in recipes.EDGES["blazepose33"]}
    for bone in (("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"), ("left_hip", "left_knee"),
                 ("right_knee", "right_ankle"), ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip")):
        assert bone in pairs
    assert max(max(e) for e in recipes.EDGES["hmr2_openpose25_extra19"]) == 24
    # OpenPose rows 2-4 and 9-11 are SMPL's right arm and leg (HMR2_SMPL_ROWS)
    hmr2 = set(recipes.EDGES["hmr2_openpose25_extra19"])
    row = {SMPL_JOINT_NAMES[j]: r for j, r in HMR2_SMPL_ROWS.items()}
    for a, b in (("right_shoulder", "right_elbow"), ("right_hip", "right_knee"), ("left_knee", "left_ankle")):
        assert (row[a], row[b]) in hmr2


# --- Blender ---------------------------------------------------------------------------------

_IMPORT_BVH = textwrap.dedent("""
    import builtins, json, sys
    import bpy
    from io_anim_bvh import import_bvh
    if sys.version_info >= (3, 11):  # Debian's Blender 3.4 importer opens with mode "rU", gone in Python 3.11
        import_bvh.open = lambda f, mode="r", *a, **k: builtins.open(f, mode.replace("U", ""), *a, **k)
    args = sys.argv[sys.argv.index("--") + 1:]
    bvh, npz, recipe, out, frames = args[0], args[1], args[2], args[3], [int(f) for f in args[4].split(",")]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_anim.bvh(filepath=bvh, update_scene_fps=True)
    arm = next(o for o in bpy.context.scene.objects if o.type == "ARMATURE")
    try:
        import numpy  # the NPZ recipe needs it: Debian's Blender uses the system's (python3-numpy)
    except ImportError:
        numpy = None
    made = None
    if numpy is not None:
        import importlib.util
        spec = importlib.util.spec_from_file_location("blender_npz", recipe)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        made = module.build(npz, 1)
    scene = bpy.context.scene
    action = arm.animation_data.action
    report = {"bones": [b.name for b in arm.data.bones], "parents": {b.name: b.parent.name if b.parent else None
              for b in arm.data.bones}, "action_range": list(action.frame_range),
              "keys": max(len(c.keyframe_points) for c in action.fcurves),
              "fps": scene.render.fps / scene.render.fps_base, "made": made, "bone_heads": {}, "empties": {}}
    for f in frames:
        scene.frame_set(f)
        report["bone_heads"][str(f)] = {pb.name: list(arm.matrix_world @ pb.head) for pb in arm.pose.bones}
        if made:
            report["empties"][str(f)] = [list(bpy.data.objects[n].matrix_world.translation) for n in made["joints"]]
    json.dump(report, open(out, "w"))
""")


@pytest.mark.slow
@needs_blender
def test_blender_imports_the_bvh_and_the_npz_recipe_puts_the_joints_where_the_bvh_does(tmp_path, npz_path):
    result = smpl_result()
    bvh_path = tmp_path / "track_1.bvh"
    bvh_path.write_text(track_bvh(result, 1))
    script = tmp_path / "check.py"
    script.write_text(_IMPORT_BVH)
    out = tmp_path / "report.json"
    recipe = Path(recipes.__file__).with_name("blender_npz.py")
    frames = [1, 7, 24]
    run = subprocess.run([BLENDER, "-b", "--factory-startup", "--python-exit-code", "1", "--python", str(script),
                          "--", str(bvh_path), str(npz_path), str(recipe), str(out), ",".join(map(str, frames))],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads(out.read_text())
    assert sorted(report["bones"]) == sorted(SMPL_JOINT_NAMES)
    assert report["parents"] == {n: SMPL_JOINT_NAMES[p] if p >= 0 else None for n, p in zip(SMPL_JOINT_NAMES,
                                                                                            SMPL_PARENTS)}
    assert report["action_range"] == [1.0, 24.0] and report["keys"] == 24 and report["fps"] == FPS
    bvh = parse_bvh(bvh_path.read_text())
    ours = bvh.positions() @ recipes.BVH_TO_BLENDER.T  # our forward kinematics, in Blender's axes
    names = [j.name for j in bvh.joints]
    people = [f.people[0] for f in result.frames]
    for f in frames:
        heads = report["bone_heads"][str(f)]
        assert max(np.abs(np.array(heads[n]) - ours[f - 1, names.index(n)]).max() for n in names) < 1e-4
    if report["made"] is None:
        pytest.skip("Blender's Python has no numpy for the NPZ recipe (Debian: apt-get install python3-numpy)")
    for f in frames:
        heads = report["bone_heads"][str(f)]
        # the NPZ recipe's empties: translation + joints_3d through (x, z, -y)
        empties = np.array(report["empties"][str(f)])
        p = people[f - 1]
        assert np.abs(empties - recipes.to_blender(p.translation + p.joints_3d.astype(np.float64))).max() < 1e-4
        # and the two agree on the pelvis: BVH root bone == joints_3d row 8
        assert np.abs(np.array(heads["pelvis"]) - empties[HMR2_SMPL_ROWS[0]]).max() < 1e-4
    assert report["made"]["frame_start"] == 1 and report["made"]["frame_end"] == 24
