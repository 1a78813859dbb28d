"""The phalp engine on the real upstream stack (CPU), against upstream's own track.py.

Runs in the venv .ci/build-upstream makes (upstream PHALP, 4D-Humans, detectron2 and
neural_renderer's Python package at the pinned commits); skipped where they are absent.
Weights are random, in upstream's formats (tests/phalp_fixtures/weights.py), written once
per session; the clip is 10 frames of two people (tests/phalp_fixtures/clip.py).

What is compared, and how closely:
- upstream's ``HMR2_4dhuman(cfg).track()`` (track.py, rendering off) and our engine, on the
  same decoded frames: per frame the same track ids and ``detected`` flags, and boxes,
  SMPL, joints and camera equal within ``TOLERANCE`` (our NPZ result against upstream's
  result pickle, converted by ``convert.record_to_person``);
- our engine with chunks of 1 and 7 frames and the whole clip; state exported after chunk
  k and restored in a new process; a job through the Serve application and the CLI;
- ``smooth=`` and the BVH export on the engine's output (one-frame chunks against the whole
  clip), and ``include=vertices`` against HMR2's own ``pred_vertices``.
Each run costs about 2 minutes on 2 cores (the detector sees 1333x750 per frame, HMR2's
ViT-H is full size), so the runs are module fixtures shared by the tests.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# Module fixtures run the models for minutes; pytest-timeout counts them into the first test.
pytestmark = [pytest.mark.phalp, pytest.mark.slow, pytest.mark.timeout(1800)]

for _module in ("phalp.configs.base", "hmr2.models", "detectron2._C"):
    pytest.importorskip(_module, reason="the upstream stack is not installed (build it: .ci/build-upstream)")

from phalp_fixtures import clip, rasterizer  # noqa: E402
from phalp_fixtures.weights import UpstreamCache, write_cache  # noqa: E402

rasterizer.install()  # before neural_renderer is imported, here and (site/) in child processes
pytest.importorskip("neural_renderer", reason="neural_renderer's Python package is not installed")

from pose_pipeline.config import Settings  # noqa: E402
from pose_pipeline.engines.base import ChunkOutput, VideoSpec  # noqa: E402
from pose_pipeline.engines.phalp import PhalpEngine, PhalpOptions  # noqa: E402
from pose_pipeline.engines.phalp.convert import record_to_person  # noqa: E402
from pose_pipeline.pipeline import JobOptions, track_file  # noqa: E402
from pose_pipeline.results.schema import Person  # noqa: E402
from pose_pipeline.results.writers import ResultFiles, read_npz  # noqa: E402
from pose_pipeline.video import ChunkDecoder, DecodeOptions, probe  # noqa: E402

FIXTURES = Path(__file__).parents[1] / "phalp_fixtures"
#: Tracker settings under which the clip's tracks confirm (n_init=3: from the third frame),
#: and the detector's minimum size the random detector's boxes (about 62 px) pass.
OPTIONS = {"device": "cpu", "min_box_width": 40, "min_box_height": 40, "n_init": 3}
UPSTREAM_OVERRIDES = {"phalp.detector": "maskrcnn", "phalp.small_w": 40, "phalp.small_h": 40, "phalp.n_init": 3}
#: Absolute tolerance per field (pixels, metres, radians). Both sides run the same fp32 code;
#: they differ in batching (we batch HMR2 across frames and the detector over frames), which
#: moves results in the last digits. Measured against upstream on this clip (9 person-frames):
#: boxes equal, 2D joints 5e-5 px, 3D joints 1.2e-6 m, translation 9e-5 m (at 43 m),
#: rotations and betas 1.5e-6; the tolerances leave about ten times that.
TOLERANCE = {"bbox": 1e-3, "joints_2d": 1e-3, "joints_3d": 2e-5, "translation": 1e-3,
             "global_orient": 2e-5, "body_pose": 2e-5, "betas": 2e-5}


# --- runs --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> UpstreamCache:
    return write_cache(tmp_path_factory.mktemp("upstream-home"))


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return clip.write_clip(tmp_path_factory.mktemp("clip") / "two-people.mp4")


def child_env(cache: UpstreamCache, **extra: str) -> dict[str, str]:
    """Environment of the processes the tests start: upstream's $HOME, the rasterizer."""
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_HOME", "XDG_CACHE_HOME", "FVCORE_CACHE")}
    env["PYTHONPATH"] = os.pathsep.join([str(FIXTURES / "site"), *filter(None, [env.get("PYTHONPATH")])])
    return {**env, "HOME": str(cache.home), **extra}


@pytest.fixture(scope="module")
def upstream(cache, video, tmp_path_factory) -> list[dict[int, dict]]:
    """Upstream track.py's result: per frame, track id -> record (with ``detected``)."""
    work = tmp_path_factory.mktemp("upstream")
    frames = clip.write_frame_folder(clip.decoded_frames(video), work / "frames" / "clip")
    run = subprocess.run([sys.executable, str(FIXTURES / "upstream_track.py"), str(frames), str(work / "out"),
                          json.dumps(UPSTREAM_OVERRIDES)], env=child_env(cache), capture_output=True, text=True,
                         timeout=1500, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    import joblib

    result = joblib.load(json.loads(run.stdout.strip().splitlines()[-1])["pkl"])
    per_frame = []
    for name in sorted(result, key=lambda n: result[n]["time"]):
        entry = result[name]
        per_frame.append({int(tid): {**{key: entry[key][i] for key in ("bbox", "smpl", "camera", "3d_joints",
                                                                      "2d_joints", "size", "conf", "extra_data")},
                                     "detected": entry["tracked_time"][i] == 0}
                          for i, tid in enumerate(entry["tid"])})
    return per_frame


@pytest.fixture(scope="module")
def engine(cache) -> PhalpEngine:
    return PhalpEngine(**cache.engine_options(**OPTIONS))


def settings_for(chunk_frames: int | None) -> Settings:
    width, height = clip.SIZE
    chunk = (chunk_frames or 1000) * width * height * 3
    return Settings.from_dict({"decode": {"chunk_bytes": chunk, "max_side": None}})


@pytest.fixture(scope="module")
def ours(engine, video, tmp_path_factory) -> dict:
    """Our engine through the offline pipeline (NPZ), whole clip in one chunk."""
    out = tmp_path_factory.mktemp("ours")
    files = ResultFiles(out, ["npz"], stem="whole")
    track_file(video, engine, settings_for(None), JobOptions(formats=("npz",)), files)
    return {"path": files.paths["npz"], "result": read_npz(files.paths["npz"])}


@dataclass
class Run:
    outputs: list[ChunkOutput]
    frames: list[dict[int, Person]]
    #: per frame, track id -> our upstream-format record of a detected person
    records: list[dict[int, dict]]
    states: dict[int, tuple[bytes, object]]  # chunk k -> (state after it, decode cursor)


def collect(outputs: list[ChunkOutput]) -> list[dict[int, Person]]:
    frames: list[dict[int, Person]] = []
    for output in outputs:
        for frame_index, person in output.corrections:
            assert person.track_id not in frames[frame_index]
            frames[frame_index][person.track_id] = person
        for frame in output.frames:
            assert frame.index == len(frames)
            frames.append({p.track_id: p for p in frame.people})
    return frames


def run_session(engine: PhalpEngine, video: Path, chunk_frames: int, keep_states: tuple[int, ...] = ()) -> Run:
    info = probe(video)
    session = engine.open(VideoSpec(*info.display_size, info.fps))
    decoding = DecodeOptions(chunk_bytes=settings_for(chunk_frames).decode.chunk_bytes)
    outputs, records, states = [], [], {}
    with ChunkDecoder(video, info, decoding) as decoder:
        for k, chunk in enumerate(decoder):
            outputs.append(session.process(chunk))
            if chunk_frames == 1:  # after a one-frame chunk, the tracker's records are that frame's
                records.append({t.track_id: t.track_data["history"][-1] for t in session.tracker.tracks
                                if t.is_confirmed() and t.time_since_update == 0})
            if k in keep_states:
                states[k] = (session.export_state(), chunk.cursor)
    session.close()
    return Run(outputs, collect(outputs), records, states)


RESTORE_AFTER = (3, 5)  # chunks (of one frame) after which a new process takes over


@pytest.fixture(scope="module")
def by_frame(engine, video) -> Run:
    return run_session(engine, video, 1, keep_states=RESTORE_AFTER)


# --- comparisons -------------------------------------------------------------------------------


def assert_people_equal(ours: dict[int, Person], theirs: dict[int, Person], where: str) -> None:
    assert sorted(ours) == sorted(theirs), f"{where}: track ids {sorted(ours)} != {sorted(theirs)}"
    for tid, a in ours.items():
        b = theirs[tid]
        assert a.detected == b.detected, f"{where}, track {tid}: detected {a.detected} != {b.detected}"
        for name in ("bbox", "joints_2d", "joints_3d", "translation"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=TOLERANCE[name],
                                       err_msg=f"{where}, track {tid}: {name}")
        for name in ("global_orient", "body_pose", "betas"):
            np.testing.assert_allclose(getattr(a.smpl, name), getattr(b.smpl, name), rtol=0, atol=TOLERANCE[name],
                                       err_msg=f"{where}, track {tid}: smpl {name}")


def assert_same_frames(ours: list[dict[int, Person]], theirs: list[dict[int, Person]],
                       frames: int = clip.FRAMES) -> None:
    assert len(ours) == len(theirs) == frames
    for index, (a, b) in enumerate(zip(ours, theirs)):
        assert_people_equal(a, b, f"frame {index}")


def upstream_people(upstream: list[dict[int, dict]]) -> list[dict[int, Person]]:
    return [{tid: record_to_person(record, tid, record["detected"]) for tid, record in frame.items()}
            for frame in upstream]


def npz_people(result) -> list[dict[int, Person]]:
    return [{p.track_id: p for p in frame.people} for frame in result.frames]


def test_upstream_confirms_tracks_on_the_clip(upstream):
    """The comparison below means something: upstream confirms a track, reports it in most
    frames (back-filled ones included), and in some frame as not detected there."""
    assert {tid for frame in upstream for tid in frame}
    assert sum(bool(frame) for frame in upstream) >= clip.FRAMES - 2
    assert any(not record["detected"] for frame in upstream for record in frame.values())


def test_equals_upstream_track_py_frame_by_frame(ours, upstream):
    assert_same_frames(npz_people(ours["result"]), upstream_people(upstream))


def test_detection_records_carry_what_upstreams_carry(by_frame, upstream):
    """conf and extra_data (upstream's run_additional_models: the person's number in the
    frame) of every detected person, as upstream's records have them."""
    compared = 0
    for index, (mine, theirs) in enumerate(zip(by_frame.records, upstream)):
        for tid, record in mine.items():
            if tid in theirs and theirs[tid]["detected"]:
                assert record["extra_data"] == theirs[tid]["extra_data"], f"frame {index}, track {tid}"
                assert abs(record["conf"] - float(theirs[tid]["conf"])) < 1e-5
                compared += 1
    assert compared >= clip.FRAMES // 2


@pytest.mark.parametrize("chunk_frames", [1, 7])
def test_result_does_not_depend_on_the_chunk_size(chunk_frames, engine, video, ours, by_frame):
    run = by_frame if chunk_frames == 1 else run_session(engine, video, chunk_frames)
    assert_same_frames(run.frames, npz_people(ours["result"]))


_RESUME = textwrap.dedent("""
    import pickle, sys
    from pose_pipeline.engines.phalp import PhalpEngine
    from pose_pipeline.video import ChunkDecoder, DecodeOptions, probe
    video, options, chunk_bytes, jobs, out = pickle.load(sys.stdin.buffer)
    engine = PhalpEngine(**options)
    info = probe(video)
    results = []
    for state, cursor in jobs:
        session = engine.restore(state)
        with ChunkDecoder(video, info, DecodeOptions(chunk_bytes=chunk_bytes), cursor) as decoder:
            results.append([session.process(chunk) for chunk in decoder])
    with open(out, "wb") as f:  # not stdout: upstream's modules print there
        pickle.dump(results, f)
""")


def test_export_after_chunk_k_and_restore_in_a_new_process(cache, engine, video, by_frame, tmp_path):
    """State after chunk k, restored by a new process (its own model, loaded from the same
    files; chunks of 4 frames there), continues as the uninterrupted run."""
    jobs = [by_frame.states[k] for k in RESTORE_AFTER]
    out = tmp_path / "resumed.pickle"
    payload = (str(video), cache.engine_options(**OPTIONS), settings_for(4).decode.chunk_bytes, jobs, str(out))
    child = subprocess.run([sys.executable, "-c", _RESUME], input=pickle.dumps(payload), capture_output=True,
                           env=child_env(cache), timeout=1500, check=False)
    assert child.returncode == 0, child.stderr.decode()[-6000:]
    for k, rest in zip(RESTORE_AFTER, pickle.loads(out.read_bytes())):
        assert_same_frames(collect(by_frame.outputs[:k + 1] + rest), by_frame.frames)


# --- smoothing and BVH on the engine's own output -----------------------------------------------


def assemble_smoothed(header, outputs: list[ChunkOutput], holdback: int, out: Path):
    """``outputs`` through the aggregation's assembler with ``smooth=medium``, into NPZ and BVH."""
    from dataclasses import replace

    from pose_pipeline.results.assembly import ResultAssembler
    from pose_pipeline.results.smoothing import SmoothingOptions

    smoothing = SmoothingOptions.parse("medium").to_dict()
    header = replace(header, processing=replace(header.processing, smoothing=smoothing))
    out.mkdir()
    files = ResultFiles(out, ["npz", "bvh"])
    assembler = ResultAssembler(header, files, holdback)
    for output in outputs:
        assembler.add(output)
    assembler.finish()
    return files.paths


def test_smoothed_in_one_frame_chunks_equals_smoothed_whole_and_exports_bvh(engine, ours, by_frame, tmp_path):
    """smooth= on phalp's own output (SMPL rotations, betas, translation, 44 joints, back-filled
    corrections): the clip in ten one-frame chunks, smoothed by the aggregation's assembler,
    gives the whole clip's smoothed result (within the engine's own chunking tolerance: its
    batching differs), the raw values stay in the NPZ, and the BVH of each track (the
    engine's SMPL body model as skeleton) puts its root at the smoothed pelvis."""
    from scipy.spatial.transform import Rotation

    from pose_pipeline.results.export.bvh import OPENCV_TO_BVH
    from pose_pipeline.results.export.skeleton import HMR2_SMPL_ROWS, SMPL_JOINT_NAMES, offsets

    header = ours["result"].header
    assert header.body_model is not None  # the engine's SMPL: the BVH's skeleton
    holdback = engine.holdback_frames
    whole = assemble_smoothed(header, [ChunkOutput(0, ours["result"].frames)], holdback, tmp_path / "whole")
    chunked = assemble_smoothed(header, by_frame.outputs, holdback, tmp_path / "chunked")
    smoothed, smoothed_whole = read_npz(chunked["npz"]), read_npz(whole["npz"])
    assert_same_frames(npz_people(smoothed), npz_people(smoothed_whole))
    raw = npz_people(ours["result"])
    changed = 0
    for frame, raw_people in zip(npz_people(smoothed), raw):
        for tid, person in frame.items():
            # the engine's values are kept beside the smoothed ones
            assert_people_equal({tid: person.raw}, {tid: raw_people[tid]}, f"raw of track {tid}")
            angles = np.linalg.norm(np.concatenate([person.smpl.global_orient[None], person.smpl.body_pose]), axis=1)
            assert angles.max() <= np.pi + 1e-6  # a rotation, not an averaged axis-angle vector
            before, after = (Rotation.from_rotvec(p.smpl.body_pose) for p in (raw_people[tid], person))
            changed += bool((before.inv() * after).magnitude().max() > 1e-3)
    assert changed >= 2  # it smoothed: the first detection of a run is the only one left as it is
    bvh_files = bvh_tracks(chunked["bvh"], smoothed)
    assert sorted(bvh_files) == sorted({tid for frame in raw for tid in frame})
    for tid, (first, bvh) in bvh_files.items():
        assert bvh.frame_time == pytest.approx(1 / clip.FPS)
        rows = [frame[tid] for frame in npz_people(smoothed) if tid in frame]
        # the skeleton is the engine's SMPL for the track's median betas (to the 6 decimals of the
        # file and of the header's body model)
        betas = np.median(np.stack([p.smpl.betas for p in rows if p.detected]), axis=0)
        index = [[j.name for j in bvh.joints].index(n) for n in SMPL_JOINT_NAMES]
        bones = np.stack([bvh.joints[k].offset for k in index])[1:]
        assert np.abs(bones - offsets(header.body_model.rest_joints_for(betas))[1:]).max() < 1e-5
        for row, frame in enumerate(npz_people(smoothed)[first:first + len(bvh.motion)]):
            if tid in frame:  # the root is the smoothed pelvis, in BVH axes
                person = frame[tid]
                pelvis = person.translation.astype(np.float64) + person.joints_3d[HMR2_SMPL_ROWS[0]]
                np.testing.assert_allclose(bvh.motion[row, :3], OPENCV_TO_BVH @ pelvis, rtol=0, atol=1e-5)


def bvh_tracks(path: Path, result) -> dict:
    """track id -> (result frame of its first BVH frame, parsed BVH), from one track's BVH file
    or the zip of several."""
    import zipfile

    from pose_pipeline.results.export.bvh import is_zip, parse_bvh

    if not is_zip(path):
        (track,) = result.tracks
        return {track.track_id: (track.first_frame, parse_bvh(path.read_text()))}
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        return {t["track_id"]: (t["first_frame"], parse_bvh(archive.read(t["file"]).decode()))
                for t in manifest["tracks"]}


# --- vertices (include=vertices) ----------------------------------------------------------------


def test_vertices_are_hmr2s_pred_vertices_and_the_body_model_is_hmr2s_smpl(engine, video):
    """A session asked for vertices gives each person HMR2's own ``pred_vertices``
    (``HMR2.forward_step`` on the crops of the chunk, run beside ours on the same input), as
    float16 (6890, 3) relative to the translation; they are the mesh of the person's reported
    SMPL parameters through HMR2's SMPL layer; and the engine's body model gives that layer's
    rest joints and faces. Four frames: the tracks confirm at the third (n_init=3)."""
    import torch
    from scipy.spatial.transform import Rotation

    from pose_pipeline.results.export.skeleton import HMR2_SMPL_ROWS

    sampler = engine.model.HMAR
    hmr2 = sampler.model
    theirs = []
    ours_forward = sampler.hmr2_forward

    def beside_upstream(image):
        with torch.no_grad():
            theirs.append(hmr2.forward_step({"img": image}, train=False)["pred_vertices"].cpu().numpy())
        return ours_forward(image)

    sampler.hmr2_forward = beside_upstream  # shadows the method on this instance only
    try:
        info = probe(video)
        session = engine.open(VideoSpec(*info.display_size, info.fps, vertices=True))
        decoding = DecodeOptions(chunk_bytes=settings_for(2).decode.chunk_bytes, end_s=4 / clip.FPS)
        with ChunkDecoder(video, info, decoding) as decoder:
            outputs = [session.process(chunk) for chunk in decoder]
        session.close()
    finally:
        del sampler.hmr2_forward
    upstream_vertices = np.concatenate(theirs).astype(np.float64)  # every crop HMR2 saw
    people = [p for frame in collect(outputs) for p in frame.values()]
    assert len(people) >= 3 and upstream_vertices.shape[1:] == (6890, 3)
    for p in people:
        assert p.vertices is not None and p.vertices.dtype == np.float16 and p.vertices.shape == (6890, 3)
        # one of HMR2's crops, to float16's precision (half a step: 2.4e-4 under 0.5 m, 4.9e-4 under 1 m)
        nearest = np.abs(upstream_vertices - p.vertices.astype(np.float64)).max(axis=(1, 2)).min()
        assert nearest <= 5e-4 * max(1.0, float(np.abs(p.vertices).max())), nearest
        rotations = Rotation.from_rotvec(np.concatenate([p.smpl.global_orient[None], p.smpl.body_pose])).as_matrix()
        with torch.no_grad():
            mesh = hmr2.smpl(global_orient=torch.tensor(rotations[:1], dtype=torch.float32)[None],
                             body_pose=torch.tensor(rotations[1:], dtype=torch.float32)[None],
                             betas=torch.tensor(p.smpl.betas)[None], pose2rot=False).vertices[0].numpy()
        assert np.abs(mesh - p.vertices.astype(np.float64)).max() < 1e-3
    model = engine.body_model()
    assert model.vertex_count == 6890 and model.faces.dtype == np.int32 and model.faces.shape == (13776, 3)
    assert np.array_equal(model.faces, np.asarray(hmr2.smpl.faces, dtype=np.int64))
    betas = people[0].smpl.betas
    identity = torch.eye(3).expand(1, 24, 3, 3)
    with torch.no_grad():  # the zero pose: every joint at its rest position
        joints = hmr2.smpl(global_orient=identity[:, :1], body_pose=identity[:, 1:], betas=torch.tensor(betas)[None],
                           pose2rot=False).joints[0].numpy()
    rest = model.rest_joints_for(betas)
    for joint, row in HMR2_SMPL_ROWS.items():
        np.testing.assert_allclose(joints[row], rest[joint], rtol=0, atol=1e-5, err_msg=f"SMPL joint {joint}")


# --- fixes -------------------------------------------------------------------------------------


def test_our_config_is_a_valid_upstream_full_config(engine, cache):
    """Built against upstream's real FullConfig (structured: omegaconf checks every type);
    float box sizes used to raise ValidationError on upstream's integer small_w/small_h."""
    from omegaconf import OmegaConf

    from pose_pipeline.engines.phalp.model import phalp_config

    options = PhalpOptions(**cache.engine_options(min_box_width=50.5, min_box_height=100.0, device="cpu"))
    cfg = phalp_config(engine.up, options, options.weight_paths(), engine.device)
    assert OmegaConf.get_type(cfg) is engine.up.FullConfig
    assert (cfg.phalp.small_w, cfg.phalp.small_h) == (51, 100)
    assert cfg.phalp.detector == "maskrcnn" and cfg.render.enable is False and cfg.device == "cpu"
    assert cfg.SMPL.MODEL_PATH == str(options.weight_paths().smpl_model)


def test_pose_predictor_runs_on_the_engines_device_with_all_its_weights(engine, cache):
    """predict 'P' on a CPU (upstream's predict_next calls .cuda()), with every weight of the
    checkpoint loaded (upstream's loader drops pose_shape_encoder's)."""
    import torch

    predictor = engine.model.pose_predictor
    assert {p.device.type for p in predictor.parameters()} == {"cpu"}
    saved = torch.load(cache.weights_dir / "phalp/weights/pose_predictor.pth", weights_only=False)["state_dict"]
    for key, value in predictor.encoder.state_dict().items():
        assert torch.equal(value, saved["encoder." + key]), key
    pose = torch.randn(2, 7, 229)
    times = torch.tensor([[0, 1, 2, 3, 4, 5, 6], [3, 4, 5, 6, 8, 9, 10]])
    with torch.no_grad():
        out = predictor.predict_next(pose, torch.zeros(2, 7, 6), times, np.array([1, 1]))
    assert out.shape == (2, 229) and out.device.type == "cpu"


# --- start-up without EGL/OpenGL -----------------------------------------------------------------

_START_WITHOUT_GL = textwrap.dedent("""
    import json, os, sys
    from pose_pipeline.engines.phalp import PhalpEngine
    engine = PhalpEngine(**json.loads(sys.argv[1]))
    loaded = [m for m in sys.modules if m.split(".")[0] in ("pyrender", "OpenGL", "glfw", "pyglet")]
    with open("/proc/self/maps") as maps:
        libraries = sorted({line.split()[-1] for line in maps if "libEGL" in line or "libGL" in line
                            or "libOpenGL" in line or "libgbm" in line})
    print(json.dumps({"modules": loaded, "libraries": libraries, "pyopengl": os.environ.get("PYOPENGL_PLATFORM")}))
""")


def test_engine_starts_without_egl_or_opengl(cache):
    """Our engine builds no renderer: in a fresh process with PYOPENGL_PLATFORM unset, no
    OpenGL/EGL module is imported and no GL library is mapped after the engine is built."""
    env = child_env(cache)
    env.pop("PYOPENGL_PLATFORM", None)
    run = subprocess.run([sys.executable, "-c", _START_WITHOUT_GL, json.dumps(cache.engine_options(**OPTIONS))],
                         env=env, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {"modules": [], "libraries": [], "pyopengl": None}


# --- through the service -------------------------------------------------------------------------


#: The Tracking replica on this CPU. A chunk keeps both cores busy for minutes, during which
#: Serve's health check (30 s timeout, 3 misses) goes unanswered and the replica would be
#: replaced mid-job (seen: worker_died after 3 attempts); on a GPU the check answers at once.
TRACKING_ON_CPU = {"ray_actor_options": {"num_cpus": 0.05, "num_gpus": 0},
                   "health_check_period_s": 60, "health_check_timeout_s": 900}


#: The Serve test tracks the clip's first frames only (each costs seconds here): enough for
#: the tracks to confirm (n_init=3) and some frames to be back-filled.
SERVE_END_S = 0.5


def test_job_through_the_serve_application_equals_the_cli(cache, video, tmp_path):
    """engine: phalp in the Serve application (a real local cluster) gives the CLI's result
    (``pose-pipeline track`` in a fresh process), on the clip's first half second."""
    import httpx
    from serve_helpers import ServeCluster, is_ready, submit, wait_job, wait_until

    engine_settings = {"name": "phalp", "options": cache.engine_options(**OPTIONS)}
    env = child_env(cache, POSE_PIPELINE_ENGINE__NAME="phalp",
                    POSE_PIPELINE_ENGINE__OPTIONS=json.dumps(engine_settings["options"]),
                    POSE_PIPELINE_DECODE__MAX_SIDE="null")
    cli_out = tmp_path / "cli.npz"
    cli = subprocess.run([sys.executable, "-m", "pose_pipeline.cli", "track", str(video), "-o", str(cli_out),
                          "--end", str(SERVE_END_S)], env=env, capture_output=True, text=True, timeout=1500,
                         check=False)
    assert cli.returncode == 0, cli.stderr[-4000:]
    cli_frames = npz_people(read_npz(cli_out))
    assert len(cli_frames) == round(SERVE_END_S * clip.FPS) and sum(len(people) for people in cli_frames) >= 3

    cluster = ServeCluster(num_gpus=0, env={"PYTHONPATH": env["PYTHONPATH"]}).start()
    try:
        url = cluster.deploy("phalp", {"engine": engine_settings, "decode": {"max_side": None},
                                       "store": {"root": str(tmp_path / "store")}},
                             deployments={"Tracking": TRACKING_ON_CPU})
        with httpx.Client(base_url=url, timeout=60) as client:
            wait_until(lambda: is_ready(client), 900, 1.0, "the application to be ready (model loaded)")
            job = submit(client, video, end_s=SERVE_END_S)
            done = wait_job(client, job["job_id"], timeout_s=1500)
            assert done["state"] == "succeeded", done.get("error")
            result = client.get(f"/v1/jobs/{job['job_id']}/result", params={"format": "npz"})
            assert result.status_code == 200
            served = tmp_path / "served.npz"
            served.write_bytes(result.content)
    finally:
        cluster.stop()
    assert_same_frames(npz_people(read_npz(served)), cli_frames, frames=len(cli_frames))


def test_gpu_benchmark_script_runs_on_the_cpu_and_checks_equality(cache, tmp_path):
    """bench/device/run, the GPU benchmark's one command, in its CPU form (the same
    measurement, tiny inputs: 6 frames, the light detector), so that it cannot rot: both sides
    run, every stage is timed, and its own equality check finds our fp32 engine equal to
    upstream's track.py within this module's tolerances; HMR2 in bf16 finds the same people."""
    env = {**os.environ, "BENCH_DEVICE": "cpu", "PYTHON": sys.executable, "OUT": str(tmp_path)}
    run = subprocess.run(["bash", str(FIXTURES.parent.parent / "bench/device/run"), "--home", str(cache.home)],
                         env=env, capture_output=True, text=True, timeout=1500, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    report = json.loads((tmp_path / "phalp_vs_upstream.json").read_text())
    assert report["frames"] == 6 and set(report["ours"]) == {"fp32", "hmr2-bf16"}
    for side in (report["upstream"], *report["ours"].values()):
        assert side["fps"] > 0
        assert {"detect", "hmr2", "associate", "rest", "startup", "track"} <= set(side["seconds"])
    equal = report["comparison"]["fp32 vs upstream"]
    assert equal["frames_with_other_ids"] == [] and equal["person_frames_compared"] >= 3
    for name, deviation in equal["max_abs_deviation"].items():
        assert deviation <= TOLERANCE[name], name
    low = report["comparison"]["hmr2-bf16 vs fp32"]
    assert low["detections_found"] == 1.0  # the detector stayed fp32: the same people
