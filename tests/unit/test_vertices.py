"""Mesh vertices and the body model in the result schema, with people built by hand: the NPZ
(float16 vertices per track, the faces once), the JSON (vertices and faces only with
``json_vertices``), reading both back, the body model's rest joints, and the raw values a
smoothed result keeps (vertices among them)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from pose_pipeline.engines.phalp.convert import smpl_body_model
from pose_pipeline.results.schema import (
    BodyModel,
    CameraModel,
    Frame,
    Person,
    ResultHeader,
    SmplParams,
    TrackingResult,
)
from pose_pipeline.results.writers import NpzWriter, dumps_json, read_json, read_npz, write_result
from pose_pipeline.results.smoothing import PRESETS, smooth_frames
from support.results import result_of, smpl_header

V, F, FPS = 6890, 13776, 30.0
_rng = np.random.default_rng(4)
REGRESSOR = _rng.dirichlet(np.ones(V) * 0.01, 24)  # rows sum to 1, as SMPL's J_regressor
TEMPLATE = _rng.normal(0, 0.3, (V, 3))
SHAPEDIRS = _rng.normal(0, 0.01, (V, 3, 10))
FACES = _rng.integers(0, V, (F, 3)).astype(np.uint32)  # smplx gives uint32; results hold int32


def model() -> BodyModel:
    return smpl_body_model(REGRESSOR, TEMPLATE, SHAPEDIRS, FACES)


def person(track_id: int, i: int, detected: bool = True, vertices: bool = True) -> Person:
    rng = np.random.default_rng([track_id, i])
    return Person(track_id, np.array([10, 20, 110, 320], np.float32) + i, 0.9, detected,
                  SmplParams(rng.normal(0, 1, 3).astype(np.float32), rng.normal(0, 0.3, (23, 3)).astype(np.float32),
                             rng.normal(0, 1, 10).astype(np.float32)),
                  rng.normal(0, 1, 3).astype(np.float32) + [0, 0, 30], rng.normal(0, 0.3, (44, 3)).astype(np.float32),
                  rng.uniform(0, 600, (44, 2)).astype(np.float32), None,
                  (TEMPLATE + rng.normal(0, 0.01, (V, 3))).astype(np.float16) if vertices else None)


def result(include: tuple[str, ...] = ("vertices",), frames: int = 6, smoothing: dict | None = None,
           body_model: BodyModel | None = None) -> TrackingResult:
    """Track 1 in every frame (coasting without a mesh at frame 3), track 2 from frame 2."""
    rows = []
    for i in range(frames):
        people = [person(1, i, detected=i != 3, vertices=i != 3)]
        if i >= 2:
            people.append(person(2, i))
        rows.append(Frame(i, i, i / FPS, tuple(people)))
    header = smpl_header(640, 480, frames, FPS, CameraModel(12500.0, (320.0, 240.0)), body_model=body_model or model(),
                         smoothing=smoothing, include=include)
    return result_of(header, rows)


def npz_of(result: TrackingResult) -> bytes:
    buffer = io.BytesIO()
    write_result(result, NpzWriter(buffer))
    return buffer.getvalue()


def test_the_npz_holds_float16_vertices_per_track_and_the_faces_once():
    made = result()
    with np.load(io.BytesIO(npz_of(made)), allow_pickle=False) as data:
        assert data["faces"].dtype == np.int32 and data["faces"].shape == (F, 3)
        assert np.array_equal(data["faces"], FACES.astype(np.int64))
        one, two = data["track_1.vertices"], data["track_2.vertices"]
        assert one.dtype == two.dtype == np.float16 and one.shape == (6, V, 3) and two.shape == (4, V, 3)
        assert np.isnan(one[3]).all() and not np.isnan(one[[0, 1, 2, 4, 5]]).any()  # the coasting row
        assert [k for k in data.files if "faces" in k] == ["faces"]
        meta = json.loads(str(data["meta"]))
    assert meta["processing"]["include"] == ["vertices"] and "faces" not in meta["body_model"]
    back = read_npz(io.BytesIO(npz_of(made)))
    assert np.array_equal(back.header.body_model.faces, FACES.astype(np.int32))
    for a, b in zip(made.frames, back.frames):
        for p, q in zip(a.people, b.people):
            if p.vertices is None:
                assert q.vertices is None
            else:
                assert q.vertices.dtype == np.float16 and np.array_equal(p.vertices, q.vertices)


def test_without_include_vertices_the_npz_has_no_faces_and_people_no_mesh():
    plain = result(include=())
    stripped = TrackingResult(plain.header, tuple(Frame(f.index, f.source_index, f.time_s, tuple(
        Person(p.track_id, p.bbox, p.score, p.detected, p.smpl, p.translation, p.joints_3d, p.joints_2d)
        for p in f.people)) for f in plain.frames), plain.tracks)
    with np.load(io.BytesIO(npz_of(stripped)), allow_pickle=False) as data:
        assert "faces" not in data and not any(k.endswith(".vertices") for k in data.files)
        assert json.loads(str(data["meta"]))["body_model"]["face_count"] == F  # the model is still described


@pytest.mark.slow
def test_the_json_has_vertices_and_faces_only_on_request():
    made = result()
    document = json.loads(dumps_json(made))
    assert not any("vertices" in p for f in document["frames"] for p in f["people"])
    assert "faces" not in document["body_model"] and document == made.to_dict()
    asked = result(include=("vertices", "json_vertices"))
    document = json.loads(dumps_json(asked))
    assert document == asked.to_dict()  # TrackingResult.to_dict is the document
    assert list(document)[:7] == ["schema_version", "engine", "video", "processing", "camera", "body_model", "frames"]
    assert np.array_equal(document["body_model"]["faces"], FACES.astype(np.int64))
    people = [p for f in document["frames"] for p in f["people"]]
    assert sum("vertices" in p for p in people) == len(people) - 1  # all but the coasting row
    back = read_json(io.StringIO(dumps_json(asked)))
    assert np.array_equal(back.header.body_model.faces, FACES.astype(np.int32))
    for a, b in zip(asked.frames, back.frames):
        for p, q in zip(a.people, b.people):
            if p.vertices is not None:
                # 4 decimals (5e-5), read back as float16: exact from 0.125 m, where float16's half
                # step (6.1e-5) is wider than the rounding; below, half a step more (3.1e-5)
                assert q.vertices.dtype == np.float16
                error = np.abs(p.vertices.astype(np.float64) - q.vertices.astype(np.float64))
                assert error.max() < 8.1e-5 and (error[np.abs(p.vertices) >= 0.125] == 0).all()


def test_the_body_models_rest_joints_are_smpls_regression_for_any_betas():
    bm = model()
    assert bm.rest_joints.shape == (24, 3) and bm.rest_joints_betas.shape == (24, 3, 10) and bm.vertex_count == V
    for betas in (np.zeros(10), np.random.default_rng(1).normal(0, 2, 10)):
        truth = REGRESSOR @ (TEMPLATE + SHAPEDIRS @ betas)
        assert np.abs(bm.rest_joints_for(betas) - truth).max() < 1e-12
    again = BodyModel.from_dict(json.loads(json.dumps(bm.to_dict())))
    assert np.abs(again.rest_joints - bm.rest_joints).max() <= 5e-7  # 6 decimals
    assert np.abs(again.rest_joints_betas - bm.rest_joints_betas).max() <= 5e-7 and again.faces is None


def test_a_smoothed_result_keeps_the_engines_values_as_raw_arrays_and_smooths_the_mesh():
    made = result(frames=12)
    smoothing = PRESETS["medium"].to_dict()
    frames = tuple(smooth_frames(made.frames, PRESETS["medium"], FPS))
    smoothed = TrackingResult(result(frames=12, smoothing=smoothing).header, frames, made.tracks)
    content = npz_of(smoothed)
    with np.load(io.BytesIO(content), allow_pickle=False) as data:
        raw, kept = data["track_2.raw.vertices"], data["track_2.vertices"]
        assert raw.dtype == kept.dtype == np.float16
        truth = np.stack([f.people[-1].vertices for f in made.frames[2:]])
        assert np.array_equal(raw, truth)  # the engine's mesh, as it was
        assert not np.array_equal(kept[1:], raw[1:]) and np.array_equal(kept[0], raw[0])  # a filter's first step
        for name in ("bbox", "joints_2d", "joints_3d", "translation", "global_orient", "body_pose", "betas"):
            assert f"track_1.raw.{name}" in data.files, name
        assert "track_1.raw.joints_confidence" not in data.files and "track_1.raw.score" not in data.files
        # the coasting row passes through: its raw values are its values
        assert np.array_equal(data["track_1.raw.bbox"][3], data["track_1.bbox"][3])
    back = read_npz(io.BytesIO(content))
    person = back.frames[5].people[1]
    assert person.raw is not None and np.array_equal(person.raw.vertices, made.frames[5].people[1].vertices)
    assert np.array_equal(person.raw.smpl.body_pose, made.frames[5].people[1].smpl.body_pose)
    assert not any("raw" in json.dumps(p) for f in json.loads(dumps_json(smoothed))["frames"] for p in f["people"])


@pytest.mark.parametrize("include", [(), ("vertices",)])
def test_a_result_without_a_body_model_says_so(include):
    made = result(include=include)
    header = ResultHeader(made.header.engine, made.header.video, made.header.processing, made.header.camera)
    document = json.loads(dumps_json(TrackingResult(header, made.frames[:1], made.tracks)))
    assert document["body_model"] is None
    with np.load(io.BytesIO(npz_of(TrackingResult(header, made.frames[:1], made.tracks)))) as data:
        assert "faces" not in data
