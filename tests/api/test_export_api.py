"""``smooth=``, ``format=bvh`` and ``include=vertices`` through the HTTP API in this process
(the real app, job service, stages and store, as tests/api/test_api.py).

- ``motion`` app: the motion engine (boxes only), chunks of 12 frames.
- ``smpl`` app: the service configured for phalp, whose tracking stage runs the SMPL stand-in
  of tests/support/smpl_standin.py (the real motion engine's tracks with SMPL, joints and
  vertices of a body model of SMPL's form): the phalp engine itself needs the upstream stack
  (tests/engines/test_phalp_real.py tests its vertices).
- ``blazepose`` (slow): the real CPU pose engine on a real clip.

Chunked equals whole: the smoother runs in the aggregation's finalize over every committed
chunk in order (``aggregate.ResultAssembler``), so a job of many small chunks must give, byte
for byte, the result of one run over the whole video (the offline CLI, or ``track_file``
with one chunk).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from pose_pipeline.assets import synthetic
from pose_pipeline.api.app import create_app
from pose_pipeline.config import Settings
from pose_pipeline.results.export.bvh import OPENCV_TO_BVH, parse_bvh
from pose_pipeline.results.export.skeleton import HMR2_SMPL_ROWS, SMPL_JOINT_NAMES, offsets
from pose_pipeline.options import JobOptions
from pose_pipeline.pipeline import track_file
from pose_pipeline.results.writers import ResultFiles, read_npz
from pose_pipeline.api.service import JobService
from pose_pipeline.results.smoothing import SmoothingOptions, jitter
from pose_pipeline.jobs.stages import LocalStages

from support.smpl_standin import BODY_MODEL, FACES, FACES_ARRAY, VERTICES, SmplStandIn

CHUNK_FRAMES = 12
SIZE = (320, 180)
SMALL_CHUNKS = {"decode": {"chunk_bytes": SIZE[0] * SIZE[1] * 3 * CHUNK_FRAMES, "max_side": None}}
WHOLE = Settings.from_dict({"decode": {"chunk_bytes": 1 << 30, "max_side": None}})


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export-api")


@pytest.fixture(scope="module")
def apps(folder):
    started: dict[str, TestClient] = {}

    def start(name: str, engine_name: str, engine=None) -> TestClient:
        if name not in started:
            settings = Settings.from_dict({**SMALL_CHUNKS, "engine": {"name": engine_name},
                                           "store": {"root": str(folder / f"store-{name}")}})
            service = JobService(settings, LocalStages.from_settings(settings, engine), owner=f"export-{name}")
            client = TestClient(create_app(service))
            client.__enter__()
            started[name] = client
        return started[name]

    yield start
    for client in started.values():
        client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def motion(apps) -> TestClient:
    return apps("motion", "motion")


@pytest.fixture(scope="module")
def smpl(apps) -> TestClient:
    # Configured as phalp (what the service allows BVH and vertices for), tracking with the stand-in.
    return apps("smpl", "phalp", SmplStandIn())


@pytest.fixture(scope="module")
def video(folder) -> Path:
    return synthetic.write_video(folder / "people.mp4", synthetic.demo_scene(duration_s=4, size=SIZE, fps=15))


@pytest.fixture(scope="module")
def one_person(folder) -> Path:
    scene = synthetic.demo_scene(duration_s=3, size=SIZE, fps=15, people=1)
    return synthetic.write_video(folder / "one.mp4", scene)


def run_job(api, client: TestClient, video: Path, **options) -> dict:
    job = api.submit(client, video, **options)
    done = api.wait_job(client, job["job_id"])
    assert done["state"] == "succeeded", done
    return done


def result(client: TestClient, job: dict, fmt: str):
    response = client.get(f"/v1/jobs/{job['job_id']}/result", params={"format": fmt})
    assert response.status_code == 200, response.text
    return response


def npz_arrays(content: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(content), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def assert_same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert a[key].tobytes() == b[key].tobytes(), key  # bit for bit (NaN rows included)


def zip_members(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def offline(video: Path, engine, out: Path, formats: list[str], **options) -> dict[str, Path]:
    """The whole video in one chunk, in this process (what ``pose-pipeline track`` runs)."""
    out.mkdir(parents=True, exist_ok=True)
    files = ResultFiles(out, formats)
    track_file(video, engine, WHOLE, JobOptions.parse({"formats": ",".join(formats), **options}), files)
    return files.paths


# --- smoothing ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_smoothed_job_in_small_chunks_equals_the_offline_cli_on_the_whole_video(api, motion, video, tmp_path):
    done = run_job(api, motion, video, smooth="medium")
    assert done["progress"]["chunks_done"] == 5  # 60 frames in chunks of 12
    assert done["options"]["smooth"] == SmoothingOptions.parse("medium").to_dict()
    served = result(motion, done, "json").json()
    assert served == api.offline_result(video, tmp_path / "offline.json", "--smooth", "medium")
    assert served["processing"]["smoothing"] == SmoothingOptions.parse("medium").to_dict()
    raw = result(motion, run_job(api, motion, video), "json").json()
    assert raw["processing"]["smoothing"] is None
    # it smoothed: same tracks and frames, other boxes, less jitter
    assert [t["track_id"] for t in raw["tracks"]] == [t["track_id"] for t in served["tracks"]]
    boxes = [(p["bbox"], q["bbox"]) for f, g in zip(raw["frames"], served["frames"])
             for p, q in zip(f["people"], g["people"])]
    assert sum(a != b for a, b in boxes) > len(boxes) / 2


@pytest.mark.slow
def test_the_npz_of_a_smoothed_job_keeps_the_raw_values(api, motion, video):
    smoothed = npz_arrays(result(motion, run_job(api, motion, video, smooth="strong", formats="npz"), "npz").content)
    plain = npz_arrays(result(motion, run_job(api, motion, video, formats="npz"), "npz").content)
    tracks = plain["track_ids"].tolist()
    assert tracks and smoothed["track_ids"].tolist() == tracks
    for tid in tracks:
        key = f"track_{tid}.bbox"
        assert smoothed[f"track_{tid}.raw.bbox"].tobytes() == plain[key].tobytes()  # the engine's boxes
        assert not np.array_equal(smoothed[key], plain[key])
    assert not any(".raw." in key for key in plain)


@pytest.mark.slow
def test_blazepose_smoothed_in_small_chunks_equals_the_offline_cli(api, apps, tmp_path):
    """The joint engine: its 2D and 3D joints go through the filter chunk after chunk."""
    from pose_pipeline.assets.clips import CARPHONE, clip

    client = apps("blazepose", "blazepose")
    carphone = clip(CARPHONE)
    done = run_job(api, client, carphone, smooth="light", end_s=2)
    assert done["progress"]["chunks_done"] > 1
    served = result(client, done, "json").json()
    assert served == api.offline_result(carphone, tmp_path / "offline.json", "--smooth", "light", "--end", "2",
                                        engine="blazepose")
    raw = api.offline_result(carphone, tmp_path / "raw.json", "--end", "2", engine="blazepose")
    from pose_pipeline.results.schema import TrackingResult

    frames = TrackingResult.from_dict(served).frames
    raw_frames = TrackingResult.from_dict(raw).frames
    assert jitter(frames, "joints_2d") < 0.7 * jitter(raw_frames, "joints_2d")
    assert jitter(frames, "joints_3d") < 0.7 * jitter(raw_frames, "joints_3d")


@pytest.mark.slow
def test_a_chunked_smpl_job_equals_the_whole_video_run_in_every_format(api, smpl, video, tmp_path):
    """Rotations on SO(3), betas, translation, joints and vertices smoothed across chunk
    boundaries and corrections, in JSON, NPZ and BVH alike."""
    options = {"smooth": "medium", "include": "vertices", "formats": "json,npz,bvh"}
    done = run_job(api, smpl, video, **options)
    assert done["progress"]["chunks_done"] == 5
    whole = offline(video, SmplStandIn(), tmp_path / "whole", ["json", "npz", "bvh"], smooth="medium",
                    include="vertices")
    assert result(smpl, done, "json").json() == json.loads(whole["json"].read_text())
    assert_same_arrays(npz_arrays(result(smpl, done, "npz").content), npz_arrays(whole["npz"].read_bytes()))
    bvh = result(smpl, done, "bvh")
    assert bvh.headers["content-type"] == "application/zip"  # several tracks
    assert zip_members(bvh.content) == zip_members(whole["bvh"].read_bytes())
    served = read_npz(io.BytesIO(result(smpl, done, "npz").content))
    raw = [p.raw for f in served.frames for p in f.people if p.detected]
    assert all(r is not None and r.smpl is not None and r.vertices is not None for r in raw)


# --- BVH ----------------------------------------------------------------------------------------


def test_bvh_of_one_track_is_a_bvh_file_and_uses_the_engines_body_model(api, smpl, one_person):
    done = run_job(api, smpl, one_person, formats="npz,bvh")
    response = result(smpl, done, "bvh")
    assert response.headers["content-type"].startswith("text/plain")
    assert f'filename="{done["job_id"]}.bvh"' in response.headers["content-disposition"]
    data = read_npz(io.BytesIO(result(smpl, done, "npz").content))
    assert len(data.tracks) == 1
    people = [p for f in data.frames for p in f.people]
    bvh = parse_bvh(response.text)
    assert bvh.frame_time == pytest.approx(1 / 15) and len(bvh.motion) == len(data.frames) - data.tracks[0].first_frame
    index = [[j.name for j in bvh.joints].index(n) for n in SMPL_JOINT_NAMES]
    # offsets: the body model's rest joints for the track's median betas (exact, not a fit)
    betas = np.median(np.stack([p.smpl.betas for p in people if p.detected]), axis=0)
    rest = BODY_MODEL.rest_joints_for(betas)
    assert np.abs(np.stack([bvh.joints[k].offset for k in index])[1:] - offsets(rest)[1:]).max() < 1e-6
    # the root is the pelvis of each frame in BVH axes; joints by forward kinematics
    rows = {f.index: p for f in data.frames for p in f.people}
    first = data.tracks[0].first_frame
    positions = bvh.positions()[:, index]
    for i, frame in enumerate(range(first, first + len(bvh.motion))):
        p = rows.get(frame)
        if p is None or not p.detected:
            continue
        pelvis = p.translation.astype(np.float64) + p.joints_3d[HMR2_SMPL_ROWS[0]]
        assert np.abs(bvh.motion[i, :3] - OPENCV_TO_BVH @ pelvis).max() < 1e-5
        wrist = SMPL_JOINT_NAMES.index("left_wrist")
        # the frame's own betas differ a little from the median: millimetres, not more
        truth = OPENCV_TO_BVH @ (p.translation + p.joints_3d[HMR2_SMPL_ROWS[wrist]])
        assert np.abs(positions[i, wrist] - truth).max() < 0.01


@pytest.mark.slow
def test_bvh_of_several_tracks_is_a_zip_with_a_manifest(api, smpl, video):
    done = run_job(api, smpl, video, formats="bvh")
    response = result(smpl, done, "bvh")
    assert response.headers["content-type"] == "application/zip"
    assert f'filename="{done["job_id"]}.zip"' in response.headers["content-disposition"]
    members = zip_members(response.content)
    manifest = json.loads(members.pop("manifest.json"))
    assert len(manifest["tracks"]) >= 2 and sorted(members) == sorted(t["file"] for t in manifest["tracks"])
    assert {t["skeleton"] for t in manifest["tracks"]} == {"smpl_model"}
    assert manifest["frame_time"] == pytest.approx(1 / 15)
    for name, text in members.items():
        assert parse_bvh(text.decode()).joints[0].name == "pelvis", name


def test_sync_track_gives_bvh(smpl, one_person):
    response = smpl.post("/v1/track", params={"format": "bvh", "formats": "json,bvh"},
                         content=one_person.read_bytes(), headers={"Content-Type": "video/mp4"})
    assert response.status_code == 200, response.text
    assert response.text.startswith("HIERARCHY\nROOT pelvis")


# --- vertices -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_vertices_are_float16_in_the_npz_with_the_faces_once_and_not_in_the_json(api, smpl, video):
    done = run_job(api, smpl, video, include="vertices")
    arrays = npz_arrays(result(smpl, done, "npz").content)
    assert arrays["faces"].dtype == np.int32 and arrays["faces"].shape == (FACES, 3)
    assert np.array_equal(arrays["faces"], FACES_ARRAY)
    for tid in arrays["track_ids"]:
        vertices = arrays[f"track_{tid}.vertices"]
        assert vertices.dtype == np.float16 and vertices.shape == (len(arrays[f"track_{tid}.frame"]), VERTICES, 3)
        assert np.isfinite(vertices).all()
    document = result(smpl, done, "json").json()
    assert document["processing"]["include"] == ["vertices"]
    assert document["body_model"]["vertex_count"] == VERTICES and document["body_model"]["face_count"] == FACES
    assert "faces" not in document["body_model"]
    assert not any("vertices" in p for f in document["frames"] for p in f["people"])


@pytest.mark.slow
def test_json_vertices_on_request(api, smpl, one_person):
    done = run_job(api, smpl, one_person, include="json_vertices")
    assert done["options"]["include"] == ["vertices", "json_vertices"]
    document = result(smpl, done, "json").json()
    assert np.array_equal(document["body_model"]["faces"], FACES_ARRAY)
    arrays = npz_arrays(result(smpl, done, "npz").content)
    tid = int(arrays["track_ids"][0])
    rows = [p["vertices"] for f in document["frames"] for p in f["people"] if p["track_id"] == tid]
    assert np.abs(np.array(rows) - arrays[f"track_{tid}.vertices"].astype(np.float64)).max() < 5.1e-5  # 4 decimals


def test_without_include_there_are_no_vertices_but_the_body_models_joints(api, smpl, one_person):
    arrays = npz_arrays(result(smpl, run_job(api, smpl, one_person, formats="npz"), "npz").content)
    assert "faces" not in arrays and not any(k.endswith(".vertices") for k in arrays)
    header = json.loads(str(arrays["meta"]))
    assert np.abs(np.array(header["body_model"]["rest_joints"]) - BODY_MODEL.rest_joints).max() <= 5e-7


# --- bad values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("params, field, names", [
    ({"smooth": "silky"}, "smooth", "unknown preset"),
    ({"smooth": ""}, "smooth", "unknown preset"),
    ({"smooth": "{not json"}, "smooth", "JSON"),
    ({"smooth": "[1, 2]"}, "smooth", "expected a preset name or an object"),
    ({"smooth": '{"pixels": {"beta": -1}}'}, "smooth", "smooth.pixels.beta"),
    ({"smooth": '{"pixels": {"min_cutoff": 0}}'}, "smooth", "smooth.pixels.min_cutoff"),
    ({"smooth": '{"rotations": {"d_cutoff": 5000}}'}, "smooth", "smooth.rotations.d_cutoff"),
    ({"smooth": '{"metres": {"beta": "NaN"}}'}, "smooth", "smooth.metres.beta"),
    ({"smooth": '{"translation": {"beta": 1e999}}'}, "smooth", "smooth.translation.beta"),
    ({"smooth": '{"pixels": {"speed": 1}}'}, "smooth", "smooth.pixels.speed"),
    ({"smooth": '{"pixels": 3}'}, "smooth", "smooth.pixels"),
    ({"smooth": '{"min_confidence": 1.5}'}, "smooth", "smooth.min_confidence"),
    ({"smooth": '{"betas_frames": 0}'}, "smooth", "smooth.betas_frames"),
    ({"smooth": '{"betas_frames": 2.5}'}, "smooth", "smooth.betas_frames"),
    ({"smooth": '{"preset": "off", "pixels": {"beta": 1}}'}, "smooth", "preset 'off'"),
    ({"smooth": '{"preset": 3}'}, "smooth", "smooth.preset"),
    ({"smooth": '{"colour": "red"}'}, "smooth", "smooth.colour"),
    ({"include": "mesh"}, "include", "vertices"),
    ({"include": "vertices,vertices"}, "include", "more than once"),
    ({"formats": "json,bvh,xml"}, "formats", "bvh"),
])
def test_every_bad_value_of_the_new_options_is_a_422_naming_it(motion, video, params, field, names):
    response = motion.post("/v1/jobs", params=params, content=video.read_bytes(), headers={"Content-Type": "video/mp4"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_option" and error["fields"] == [field] and names in error["message"], error


@pytest.mark.parametrize("params, option", [
    ({"formats": "json,bvh"}, "formats"),
    ({"include": "vertices"}, "include"),
    ({"include": "json_vertices"}, "include"),
])
def test_engines_without_smpl_refuse_bvh_and_vertices_at_submission(motion, video, params, option):
    response = motion.post("/v1/jobs", params=params, content=video.read_bytes(), headers={"Content-Type": "video/mp4"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_option" and error["option"] == option and "'motion'" in error["message"]


def test_bvh_not_requested_or_on_the_sync_endpoint_of_a_joint_engine_is_a_422(api, motion, smpl, video, one_person):
    sync = motion.post("/v1/track", params={"format": "bvh"}, content=video.read_bytes(),
                       headers={"Content-Type": "video/mp4"})
    assert sync.status_code == 422 and sync.json()["error"]["option"] == "format"
    job = run_job(api, smpl, one_person, formats="json")
    late = smpl.get(f"/v1/jobs/{job['job_id']}/result", params={"format": "bvh"})
    assert late.status_code == 422 and late.json()["error"]["option"] == "format"


# --- the offline CLI ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["-o", "out.bvh"], "format bvh needs an engine with SMPL"),
    (["-o", "out.json", "--format", "bvh"], "format bvh needs an engine with SMPL"),
    (["-o", "out.npz", "--include", "vertices"], "include=vertices needs an engine with a body model"),
    (["-o", "out.json", "--smooth", "silky"], "unknown preset"),
    (["-o", "out.json", "--smooth", '{"pixels": {"beta": -2}}'], "smooth.pixels.beta"),
])
def test_the_offline_cli_refuses_what_the_api_refuses(video, tmp_path, args, message):
    env = {"POSE_PIPELINE_ENGINE__NAME": "motion", "PATH": os.environ.get("PATH", "")}
    run = subprocess.run([sys.executable, "-m", "pose_pipeline.cli", "track", str(video), *args], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "error: invalid_option:" in run.stderr and message in run.stderr, run.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("out")]


@pytest.mark.slow
@pytest.mark.parametrize("output, tracks", [("one.bvh", 1), ("people.bvh", 2), ("people.zip", 2)])
def test_the_offline_cli_names_a_bvh_result_by_what_it_holds(monkeypatch, video, one_person, tmp_path, output,
                                                             tracks):
    """``pose-pipeline track -o x.bvh``: one track's BVH, or the zip of several as x.zip (the
    CLI's own code, with the stand-in as the configured phalp engine)."""
    from pose_pipeline.cli.main import main
    from pose_pipeline.engines.registry import EngineRegistry

    monkeypatch.setenv("POSE_PIPELINE_ENGINE__NAME", "phalp")
    monkeypatch.setenv("POSE_PIPELINE_DECODE__MAX_SIDE", "null")
    monkeypatch.setattr(EngineRegistry, "create", lambda self, name, options=None: SmplStandIn())
    source = one_person if tracks == 1 else video
    assert main(["track", str(source), "-o", str(tmp_path / output), "--smooth", "light"]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    stem = output.rsplit(".", 1)[0]
    if tracks == 1:
        assert written == [f"{stem}.bvh"] and (tmp_path / written[0]).read_text().startswith("HIERARCHY")
    else:
        assert written == [f"{stem}.zip"]
        members = zip_members((tmp_path / written[0]).read_bytes())
        assert "manifest.json" in members and len(members) >= 3
