"""Result schema v1, its JSON and NPZ serialisations, atomic result files, and the assembler
that turns chunk outputs into a result (corrections, streaming, scaling, track summaries).

Results are built by hand so that every optional field is exercised: one track carries the
3D fields (SMPL, translation, joints) in every frame, another only in the frames where it
was detected, and a result of the CPU engine's kind carries none.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from pose_pipeline.results.assembly import ResultAssembler, assemble
from pose_pipeline.engines.base import ChunkOutput
from pose_pipeline.errors import InternalError
from pose_pipeline.results.schema import (CameraModel, EngineInfo, Frame, Person, Processing, ResultHeader, SmplParams,
                                          TrackingResult, TrackSummary, VideoInfo, summarize_tracks)
from pose_pipeline.results.writers import (JsonWriter, MemoryWriter, NpzWriter, ResultFiles, dumps_json, read_json,
                                           read_npz, read_result, write_result)

JOINTS = 44
# JSON rounding per quantity (schema.py): decimals -> the largest error a round trip may add.
PIXEL_ATOL, METRIC_ATOL, ANGLE_ATOL, SCORE_ATOL, TIME_ATOL = (0.51 * 10.0 ** -d for d in (2, 4, 5, 4, 6))


# --- building results --------------------------------------------------------------------------


def f32(rng: np.random.Generator, shape, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    return (offset + scale * rng.standard_normal(shape)).astype(np.float32)


def make_person(rng: np.random.Generator, track_id: int, detected: bool, with_3d: bool) -> Person:
    x, y = rng.uniform(0, 200, 2)
    bbox = np.array([x, y, x + rng.uniform(20, 60), y + rng.uniform(60, 150)], dtype=np.float32)
    if not with_3d:
        return Person(track_id, bbox, float(np.float32(rng.random())), detected)
    return Person(
        track_id, bbox, float(np.float32(rng.random())), detected,
        smpl=SmplParams(f32(rng, 3), f32(rng, (23, 3), 0.3), f32(rng, 10)),
        translation=f32(rng, 3, 0.5, 4.0),
        joints_3d=f32(rng, (JOINTS, 3), 0.4),
        joints_2d=f32(rng, (JOINTS, 2), 50.0, 150.0),
    )


def make_header(with_3d: bool) -> ResultHeader:
    engine = EngineInfo("test-engine", "2.5", "hand-built people", provides_3d=with_3d,
                        joint_format="smpl_44" if with_3d else None)
    return ResultHeader(
        engine=engine,
        video=VideoInfo(width=640, height=360, fps=30.0, duration_s=0.4, frame_count=12, rotation=0,
                        codec="h264", container="mp4"),
        processing=Processing(fps=None, max_side=320, frame_width=320, frame_height=180),
        camera=CameraModel(512.5, (320.0, 180.0)) if with_3d else None,
    )


def make_result(with_3d: bool, frames: int = 12, seed: int = 0) -> TrackingResult:
    """Track 1 in every frame (3D when ``with_3d``); track 2 in frames 3-8, predicted in
    frames 5-6 and without 3D there; track 3 only in frame 10."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(frames):
        people = [make_person(rng, 1, True, with_3d)]
        if 3 <= i <= 8:
            detected = i not in (5, 6)
            people.append(make_person(rng, 2, detected, with_3d and detected))
        if i == 10:
            people.append(make_person(rng, 3, True, False))
        out.append(Frame(i, 2 * i + 1, (2 * i + 1) / 30.0, tuple(people)))
    return TrackingResult(make_header(with_3d), tuple(out), summarize_tracks(out))


def npz_bytes(result: TrackingResult) -> bytes:
    buffer = io.BytesIO()
    write_result(result, NpzWriter(buffer))
    return buffer.getvalue()


# --- comparing results -------------------------------------------------------------------------

EXACT = dict(pixel=0.0, metric=0.0, angle=0.0, score=0.0, time=0.0)
ROUNDED = dict(pixel=PIXEL_ATOL, metric=METRIC_ATOL, angle=ANGLE_ATOL, score=SCORE_ATOL, time=TIME_ATOL)


def assert_same_result(a: TrackingResult, b: TrackingResult, tol: dict[str, float]) -> None:
    """Same header, tracks and frames; numbers equal within ``tol`` (exact with EXACT, and
    then the arrays must be float32 too)."""
    assert a.header == b.header
    assert a.tracks == b.tracks
    assert [(f.index, f.source_index) for f in a.frames] == [(f.index, f.source_index) for f in b.frames]
    for fa, fb in zip(a.frames, b.frames, strict=True):
        assert fa.time_s == pytest.approx(fb.time_s, abs=tol["time"], rel=0)
        for pa, pb in zip(fa.people, fb.people, strict=True):
            assert (pa.track_id, pa.detected) == (pb.track_id, pb.detected)
            assert pa.score == pytest.approx(pb.score, abs=tol["score"], rel=0)
            pairs = [(pa.bbox, pb.bbox, "pixel"), (pa.joints_2d, pb.joints_2d, "pixel"),
                     (pa.translation, pb.translation, "metric"), (pa.joints_3d, pb.joints_3d, "metric")]
            assert (pa.smpl is None) == (pb.smpl is None)
            if pa.smpl is not None:
                pairs += [(getattr(pa.smpl, n), getattr(pb.smpl, n), "angle")
                          for n in ("global_orient", "body_pose", "betas")]
            for x, y, kind in pairs:
                assert (x is None) == (y is None)
                if x is None:
                    continue
                assert x.dtype == y.dtype == np.float32 and x.shape == y.shape
                if tol[kind] == 0.0:
                    np.testing.assert_array_equal(x, y)
                else:
                    np.testing.assert_allclose(x, y, rtol=1e-6, atol=tol[kind])


# --- JSON --------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_3d", [True, False], ids=["3d", "boxes-only"])
def test_json_round_trip_is_stable_and_within_rounding(with_3d):
    result = make_result(with_3d)
    text = dumps_json(result)
    again = read_json(io.StringIO(text))
    assert dumps_json(again) == text
    assert_same_result(result, again, ROUNDED)


def test_json_document_layout():
    result = make_result(with_3d=True)
    doc = json.loads(dumps_json(result))
    assert doc["schema_version"] == "1"
    assert (doc["engine"]["name"], doc["engine"]["version"]) == ("test-engine", "2.5")
    assert doc["camera"] == {"focal_length_px": 512.5, "principal_point_px": [320.0, 180.0]}
    assert [f["index"] for f in doc["frames"]] == list(range(12))
    assert doc["tracks"] == [t.to_dict() for t in result.tracks]
    with_3d = doc["frames"][3]["people"][0]
    assert set(with_3d) == {"track_id", "bbox", "score", "detected", "smpl", "translation",
                            "joints_3d", "joints_2d"}
    assert np.shape(with_3d["smpl"]["body_pose"]) == (23, 3)
    assert np.shape(with_3d["joints_2d"]) == (JOINTS, 2)
    predicted = doc["frames"][5]["people"][1]  # track 2, predicted, no 3D in that frame
    assert (predicted["track_id"], predicted["detected"]) == (2, False)
    assert set(predicted) == {"track_id", "bbox", "score", "detected"}


def test_json_writer_streams_a_valid_document_even_without_frames():
    buffer = io.StringIO()
    writer = JsonWriter(buffer)
    writer.begin(make_header(with_3d=False))
    writer.end([])
    doc = json.loads(buffer.getvalue())
    assert doc["schema_version"] == "1" and doc["engine"]["name"] == "test-engine"
    assert doc["frames"] == [] and doc["tracks"] == [] and doc["camera"] is None


def test_unknown_schema_version_is_refused():
    doc = json.loads(dumps_json(make_result(with_3d=False)))
    doc["schema_version"] = "2"
    with pytest.raises(ValueError, match="schema_version"):
        TrackingResult.from_dict(doc)


# --- NPZ ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_3d", [True, False], ids=["3d", "boxes-only"])
def test_npz_round_trip_is_exact(with_3d):
    result = make_result(with_3d)
    assert_same_result(result, read_npz(io.BytesIO(npz_bytes(result))), EXACT)


def test_npz_has_one_row_per_frame_of_each_track():
    result = make_result(with_3d=True)
    with np.load(io.BytesIO(npz_bytes(result))) as data:
        assert data["track_ids"].tolist() == [1, 2, 3]
        np.testing.assert_array_equal(data["frame_index"], np.arange(12))
        for track in result.tracks:
            prefix = f"track_{track.track_id}."
            appears = [f.index for f in result.frames if any(p.track_id == track.track_id for p in f.people)]
            np.testing.assert_array_equal(data[prefix + "frame"], appears)
            arrays = [k for k in data.files if k.startswith(prefix)]
            assert {len(data[k]) for k in arrays} == {len(appears)}, arrays
        # Track 2 has no 3D in its predicted frames (5, 6: rows 2, 3): NaN rows keep the alignment.
        joints = data["track_2.joints_3d"]
        assert joints.shape == (6, JOINTS, 3) and joints.dtype == np.float32
        assert np.isnan(joints[2:4]).all() and not np.isnan(joints[[0, 1, 4, 5]]).any()
        assert "track_3.joints_3d" not in data.files  # never had any


# --- result files ------------------------------------------------------------------------------


def test_result_files_are_published_only_when_complete(tmp_path):
    result = make_result(with_3d=True)
    files = ResultFiles(tmp_path, ["json", "npz"])
    files.begin(result.header)
    for frame in result.frames:
        files.frame(frame)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json.partial", "result.npz.partial"]
    files.end(result.tracks)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json", "result.npz"]
    assert dumps_json(read_result(files.paths["json"])) == dumps_json(result)
    assert_same_result(read_result(files.paths["npz"]), result, EXACT)


def test_result_files_abort_leaves_nothing(tmp_path):
    result = make_result(with_3d=False)
    files = ResultFiles(tmp_path, ["json", "npz"])
    files.begin(result.header)
    files.frame(result.frames[0])
    files.abort()
    assert list(tmp_path.iterdir()) == []


# --- assembling chunk outputs ------------------------------------------------------------------

HOLDBACK, CHUNK = 2, 4
# Decoded frames are 320x180; the source is 640x270: x scales by 2, y by 1.5.
SCALE = np.array([2.0, 1.5, 2.0, 1.5], dtype=np.float32)


def assembler_header() -> ResultHeader:
    return ResultHeader(
        engine=make_header(True).engine,
        video=VideoInfo(640, 270, 30.0, 16 / 30, 16, 0, "h264", "mp4"),
        processing=Processing(fps=None, max_side=320, frame_width=320, frame_height=180),
    )


def box(i: int, track_id: int = 1) -> np.ndarray:
    return np.array([i, 10 * track_id, i + 20, 10 * track_id + 40], dtype=np.float32)


def chunk_output(index: int, corrections=()) -> ChunkOutput:
    """Chunk ``index`` of CHUNK frames; track 1 is detected in every frame."""
    frames = tuple(Frame(i, i, i / 30, (Person(1, box(i), 0.9, True),))
                   for i in range(index * CHUNK, (index + 1) * CHUNK))
    return ChunkOutput(index, frames, tuple(corrections))


def test_assembler_applies_corrections_and_scales_to_source_pixels():
    rng = np.random.default_rng(1)
    first = CHUNK  # first frame of chunk 1; corrections may reach HOLDBACK frames before it
    late = make_person(rng, 2, True, with_3d=True)
    late = Person(2, box(first - 2, 2), 0.8, True, late.smpl, late.translation, late.joints_3d, late.joints_2d)
    corrections = [
        (first - 2, late),  # adds track 2 to a frame of chunk 0, at the edge of the window
        (first - 1, Person(2, box(first - 1, 2), 0.8, True)),
        (first - 1, Person(1, box(99), 0.5, False)),  # replaces track 1 there
        (first + 1, Person(3, box(first + 1, 3), 0.7, True)),  # a frame of the same chunk
    ]
    writer = MemoryWriter()
    tracks = assemble(assembler_header(), [chunk_output(0), chunk_output(1, corrections), chunk_output(2)],
                      writer, HOLDBACK)
    frames = writer.result.frames
    assert [f.index for f in frames] == list(range(3 * CHUNK))
    people = {(f.index, p.track_id): p for f in frames for p in f.people}
    assert sorted(k for k in people if k[1] != 1) == [(first - 2, 2), (first - 1, 2), (first + 1, 3)]
    assert [p.track_id for p in frames[first - 1].people] == [1, 2]  # sorted by id
    replaced = people[(first - 1, 1)]
    assert (replaced.detected, replaced.score) == (False, 0.5)
    np.testing.assert_array_equal(replaced.bbox, box(99) * SCALE)
    np.testing.assert_array_equal(people[(7, 1)].bbox, box(7) * SCALE)
    added = people[(first - 2, 2)]
    np.testing.assert_array_equal(added.joints_2d, late.joints_2d * SCALE[:2])
    np.testing.assert_array_equal(added.joints_3d, late.joints_3d)  # metres: not scaled
    np.testing.assert_array_equal(added.translation, late.translation)
    assert tracks == writer.result.tracks == summarize_tracks(frames)
    assert tracks == (TrackSummary(1, 0, 11, 11, 1), TrackSummary(2, 2, 3, 2, 0), TrackSummary(3, 5, 5, 1, 0))


def test_assembler_refuses_a_correction_past_the_holdback_window():
    assembler = ResultAssembler(assembler_header(), MemoryWriter(), HOLDBACK)
    assembler.add(chunk_output(0))
    too_far = (CHUNK - HOLDBACK - 1, Person(2, box(0, 2), 0.8, True))
    with pytest.raises(InternalError, match="hold-back window"):
        assembler.add(chunk_output(1, [too_far]))


def test_assembler_refuses_chunks_out_of_order():
    assembler = ResultAssembler(assembler_header(), MemoryWriter(), HOLDBACK)
    assembler.add(chunk_output(0))
    with pytest.raises(InternalError, match="expected 1"):
        assembler.add(chunk_output(2))


def test_assembler_streams_frames_once_no_correction_can_reach_them():
    assembler = ResultAssembler(assembler_header(), MemoryWriter(), HOLDBACK)
    for index in range(6):
        assembler.add(chunk_output(index))
        newest = (index + 1) * CHUNK - 1
        # The next chunk starts at newest + 1 and may correct back to newest + 1 - HOLDBACK.
        assert assembler.frames_written == newest + 1 - HOLDBACK
        assert (index + 1) * CHUNK - assembler.frames_written <= HOLDBACK + CHUNK
    assembler.finish()
    assert assembler.frames_written == 6 * CHUNK


def smpl_frames(count: int, people: int = 3):
    """``count`` frames of ``people`` SMPL-sized people, made one frame at a time."""
    rng = np.random.default_rng(2)
    for i in range(count):
        yield Frame(i, i, i / 30, tuple(make_person(rng, track, True, with_3d=True) for track in range(1, people + 1)))


def npz_peak_bytes(frames: int, path) -> int:
    """Peak of Python-tracked memory (numpy's arrays included) while the NPZ writer takes
    ``frames`` frames, over what one frame alone costs."""
    import tracemalloc

    writer = NpzWriter(path, buffer_bytes=64 * 1024)
    writer.begin(make_header(with_3d=True))
    tracemalloc.start()
    try:
        for frame in smpl_frames(frames):
            writer.frame(frame)
        writer.end(summarize_tracks(smpl_frames(1)))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_npz_writer_memory_does_not_grow_with_the_video(tmp_path):
    # 8x the frames: 5 MiB of people instead of 0.6, against a peak of some 0.2 MiB (the
    # 64 KiB buffer, numpy's and Python's overhead, the archive): the writer spills what it is
    # given. (Its peak varies by a third with where the last flush falls.)
    npz_peak_bytes(20, tmp_path / "warm-up.npz")  # first-call allocations (imports, caches)
    short, long = npz_peak_bytes(150, tmp_path / "short.npz"), npz_peak_bytes(1200, tmp_path / "long.npz")
    assert (tmp_path / "long.npz").stat().st_size > 7 * (tmp_path / "short.npz").stat().st_size
    assert long < 2 * short < 1024 * 1024, (short, long)
    assert not list(tmp_path.glob(".npz-spill-*"))  # the spill files are gone
    again = read_npz(tmp_path / "long.npz")
    assert len(again.frames) == 1200 and all(len(f.people) == 3 for f in again.frames)


def test_npz_a_track_whose_3d_starts_late_has_nan_rows_before_it():
    rng = np.random.default_rng(3)
    frames = tuple(Frame(i, i, i / 30, (make_person(rng, 1, True, with_3d=i >= 3),)) for i in range(6))
    result = TrackingResult(make_header(with_3d=True), frames, summarize_tracks(frames))
    with np.load(io.BytesIO(npz_bytes(result))) as data:
        joints = data["track_1.joints_3d"]
        assert joints.shape == (6, JOINTS, 3) and np.isnan(joints[:3]).all() and not np.isnan(joints[3:]).any()
    assert_same_result(result, read_npz(io.BytesIO(npz_bytes(result))), EXACT)
