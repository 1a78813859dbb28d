"""The motion engine against ground truth, and the guarantees every engine gives.

Videos are synthetic scenes (``pose_pipeline.assets.synthetic``) encoded to H.264 with PyAV and
decoded by the project's own decoder, so the engine sees real compression artefacts. The
scenes are small (320x180 and 640x360, a few seconds) to keep the module fast.

Metrics, per frame: predicted boxes are matched to ground-truth boxes by the Hungarian
algorithm on IoU, a pair counting when IoU >= 0.5. Precision and recall are counted on
frames where the figures are well apart (a background-subtraction tracker sees people who
overlap as one blob, by construction); mean IoU is over all matched pairs; an identity
switch is a change of the matched track id while a figure stays in the picture; a
transfer is a track id matched to two different figures.

What the tests pin down about the design (see ``pose_pipeline/engines/motion/``):
- crossing people keep their ids: while their blobs are merged they coast on their
  predicted paths (reported with ``detected=False``) and are matched again afterwards;
- the tracker has no appearance model: a figure that leaves for longer than ``max_age``
  frames comes back with a NEW id (asserted);
- people present in the first frame leave "ghosts" in the initial background; a ghost is
  recognised and absorbed as soon as the person has walked clear of it (the same after a
  cut, which also ends all tracks);
- chunking, and exporting the state and resuming in another process, change nothing.
"""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from pose_pipeline.assets import synthetic
from pose_pipeline.engines.base import ChunkOutput, VideoSpec
from pose_pipeline.engines.boxes import box_iou
from pose_pipeline.engines.motion import MotionEngine
from pose_pipeline.engines.registry import EngineRegistry
from pose_pipeline.errors import InternalError, InvalidOption
from pose_pipeline.results.schema import Person
from pose_pipeline.assets.synthetic import Figure, Scene
from pose_pipeline.video import ChunkDecoder, DecodeCursor, DecodeOptions, FrameChunk, probe

MATCH_IOU = 0.5
RED = dict(torso=(205, 40, 40), legs=(40, 40, 95))
BLUE = dict(torso=(40, 90, 215), legs=(30, 30, 30))
GREEN = dict(torso=(40, 170, 60), legs=(95, 55, 25))


def crossing_scene() -> Scene:
    """Two people walk in from opposite sides and cross in the middle (frames ~80-100);
    a third, in a lane of their own, starts in view, walks out at frame ~30 and comes back
    at frame ~108, after more than max_age frames away."""
    return Scene(320, 180, fps=30.0, duration_s=5.0, seed=1, figures=(
        Figure(1, ((0.0, -0.1, 0.85), (5.0, 0.85, 0.85)), height=0.45, **RED),
        Figure(2, ((0.0, 1.1, 0.93), (5.0, 0.1, 0.93)), height=0.5, **BLUE),
        Figure(3, ((0.0, 0.45, 0.35), (1.1, -0.1, 0.35), (3.4, -0.1, 0.35), (5.0, 0.55, 0.35)),
               height=0.25, **GREEN),
    ))


def first_frame_scene() -> Scene:
    """Two people already in view in the first frame walk apart and out (640x360: the
    engine works on a 2x shrunk image)."""
    return Scene(640, 360, fps=30.0, duration_s=4.0, seed=2, figures=(
        Figure(1, ((0.0, 0.3, 0.85), (4.0, -0.1, 0.85)), height=0.45, **RED),
        Figure(2, ((0.0, 0.6, 0.93), (4.0, 1.1, 0.93)), height=0.5, **BLUE),
    ))


# --- running the engine ----------------------------------------------------------------------


@dataclass
class Run:
    outputs: list[ChunkOutput]
    frames: list[dict[int, Person]]  # per frame: track id -> Person, corrections applied


def decode_options(video_path: Path, chunk_frames: int | None) -> DecodeOptions:
    info = probe(video_path)
    width, height = info.display_size
    return DecodeOptions(chunk_bytes=(chunk_frames or info.frame_count + 1) * width * height * 3)


def run_engine(contract, video_path: Path, chunk_frames: int | None = 64, **options) -> Run:
    engine = MotionEngine(**options)
    info = probe(video_path)
    session = engine.open(VideoSpec(*info.display_size, info.fps))
    with ChunkDecoder(video_path, info, decode_options(video_path, chunk_frames)) as decoder:
        outputs = [session.process(chunk) for chunk in decoder]
    return Run(outputs, contract.collect(outputs, engine.holdback_frames))


def as_arrays(frames: list[dict[int, Person]]) -> list[tuple]:
    """Exact, comparable form of a result: per frame, ids, boxes, scores and flags."""
    result = []
    for people in frames:
        ids = sorted(people)
        result.append((ids, np.array([people[i].bbox for i in ids], dtype=np.float32).reshape(-1, 4),
                       [people[i].score for i in ids], [people[i].detected for i in ids]))
    return result


def assert_same_result(a: list[dict[int, Person]], b: list[dict[int, Person]]) -> None:
    assert len(a) == len(b)
    for index, (x, y) in enumerate(zip(as_arrays(a), as_arrays(b))):
        assert x[0] == y[0], f"frame {index}: ids {x[0]} != {y[0]}"
        assert np.array_equal(x[1], y[1]), f"frame {index}: boxes differ"
        assert x[2] == y[2] and x[3] == y[3], f"frame {index}: scores or flags differ"


# --- metrics ---------------------------------------------------------------------------------


@dataclass
class Metrics:
    precision: float  # on well-separated frames
    recall: float  # on well-separated frames
    mean_iou: float  # of matched pairs, all frames
    switches: dict[int, int]  # figure -> id changes while it stays in the picture
    ids: dict[int, list[list[int]]]  # figure -> per visit (continuous visibility), ids in order
    transfers: int  # track ids matched to more than one figure


def match(truth: list[synthetic.GroundTruth], people: dict[int, Person]) -> list[tuple[int, int, float]]:
    """(figure id, track id, IoU) of the pairs the Hungarian algorithm matches at IoU >= 0.5."""
    if not truth or not people:
        return []
    ids = list(people)
    iou = box_iou(np.array([g.box for g in truth], dtype=np.float64),
                  np.array([people[i].bbox for i in ids], dtype=np.float64))
    rows, cols = linear_sum_assignment(-iou)
    return [(truth[r].figure_id, ids[c], float(iou[r, c])) for r, c in zip(rows, cols) if iou[r, c] >= MATCH_IOU]


def well_separated(truth: list[synthetic.GroundTruth], margin: float) -> bool:
    """All figures mostly in the picture and at least ``margin`` pixels apart."""
    if any(g.visible_fraction < 0.8 for g in truth):
        return False
    boxes = np.array([g.box for g in truth], dtype=np.float64).reshape(-1, 4)
    grown = boxes + np.array([-margin, -margin, margin, margin]) / 2
    overlap = box_iou(grown, grown) > 0
    return not np.any(overlap[~np.eye(len(boxes), dtype=bool)])


def evaluate(scene: Scene, frames: list[dict[int, Person]], skip: int = 0, margin: float = 8.0) -> Metrics:
    renderer = synthetic.Renderer(scene)
    tp = fp = fn = 0
    ious: list[float] = []
    visits: dict[int, list[list[int]]] = {}
    previous_visible: set[int] = set()
    figures_of_track: dict[int, set[int]] = {}
    for index, people in enumerate(frames):
        truth = renderer.ground_truth(index)
        pairs = match(truth, people)
        if index >= skip and well_separated(truth, margin):
            tp, fp, fn = tp + len(pairs), fp + len(people) - len(pairs), fn + len(truth) - len(pairs)
        visible = {g.figure_id for g in truth}
        for figure in visible - previous_visible:
            visits.setdefault(figure, []).append([])
        previous_visible = visible
        for figure, track, iou in pairs:
            ious.append(iou)
            figures_of_track.setdefault(track, set()).add(figure)
            visit = visits[figure][-1]
            if not visit or visit[-1] != track:
                visit.append(track)
    return Metrics(
        precision=tp / max(tp + fp, 1), recall=tp / max(tp + fn, 1),
        mean_iou=float(np.mean(ious)) if ious else 0.0,
        switches={f: sum(max(len(v) - 1, 0) for v in vs) for f, vs in visits.items()},
        ids={f: [sorted(set(v), key=v.index) for v in vs] for f, vs in visits.items()},
        transfers=sum(len(f) > 1 for f in figures_of_track.values()),
    )


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crossing_video(tmp_path_factory) -> Path:
    return synthetic.write_video(tmp_path_factory.mktemp("motion") / "crossing.mp4", crossing_scene())


@pytest.fixture(scope="module")
def first_frame_video(tmp_path_factory) -> Path:
    return synthetic.write_video(tmp_path_factory.mktemp("motion") / "first_frame.mp4", first_frame_scene())


@pytest.fixture(scope="module")
def crossing_run(contract, crossing_video) -> Run:
    return run_engine(contract, crossing_video)


# --- ground truth ----------------------------------------------------------------------------


@pytest.mark.slow
def test_tracks_crossing_people_with_accurate_boxes_and_stable_ids(crossing_run):
    metrics = evaluate(crossing_scene(), crossing_run.frames)
    print(metrics)
    assert metrics.precision >= 0.95
    assert metrics.recall >= 0.95
    assert metrics.mean_iou >= 0.85
    assert metrics.transfers == 0
    # Figures 1 and 2 cross: one id each for the whole video, no switch.
    assert metrics.switches[1] == 0 and metrics.switches[2] == 0
    assert len(metrics.ids[1]) == 1 and len(metrics.ids[1][0]) == 1
    assert len(metrics.ids[2]) == 1 and len(metrics.ids[2][0]) == 1


def test_crossing_people_coast_through_the_merge(crossing_run):
    """While the two people overlap their blobs are one: both tracks are still reported,
    as predictions (``detected=False``), and their boxes still match the true ones."""
    renderer = synthetic.Renderer(crossing_scene())
    overlapping = 0
    for index, people in enumerate(crossing_run.frames):
        truth = {g.figure_id: g for g in renderer.ground_truth(index)}
        if not (1 in truth and 2 in truth and box_iou(*(truth[f].box[None].astype(float) for f in (1, 2)))[0, 0] > 0):
            continue
        overlapping += 1
        pairs = {figure: track for figure, track, _ in match(list(truth.values()), people)}
        assert 1 in pairs and 2 in pairs, f"frame {index}: a crossing person is lost"
        assert not people[pairs[1]].detected and not people[pairs[2]].detected
    assert overlapping >= 10


def test_a_person_who_leaves_for_long_comes_back_with_a_new_id(crossing_run):
    renderer = synthetic.Renderer(crossing_scene())
    in_view = [any(g.figure_id == 3 for g in renderer.ground_truth(i)) for i in range(len(crossing_run.frames))]
    first_exit = in_view.index(False)
    absence = in_view[first_exit:].index(True)
    assert absence > MotionEngine().options.max_age  # the scene is what this test is about
    visits = evaluate(crossing_scene(), crossing_run.frames).ids[3]
    assert len(visits) == 2, "figure 3 is in the picture twice"
    assert all(len(ids) == 1 for ids in visits), f"one id per visit: {visits}"
    assert visits[0] != visits[1], "no appearance model: the returning person gets a new id"


def test_ids_are_consecutive_from_one(crossing_run):
    """Ids are given at confirmation, so tentative tracks (noise, ghosts) burn none."""
    seen: list[int] = []
    for people in crossing_run.frames:
        seen += [i for i in sorted(people) if i not in seen]
    assert sorted(seen) == list(range(1, len(seen) + 1))


@pytest.mark.slow
def test_people_in_the_first_frame_leave_no_lasting_ghost(contract, first_frame_video):
    """Until a person has walked clear of where they stood in the first frame, their blob
    includes that spot; then the ghost is recognised and absorbed at once, leaving no
    false track behind."""
    frames = run_engine(contract, first_frame_video).frames
    warm_up = 40  # these people (2.1-2.7 px/frame) walk clear of their own width (62-68 px) in ~30
    metrics = evaluate(first_frame_scene(), frames, skip=warm_up)
    print(metrics)
    assert metrics.precision >= 0.95
    assert metrics.recall >= 0.95
    assert metrics.mean_iou >= 0.8
    assert metrics.transfers == 0
    assert metrics.switches == {1: 0, 2: 0}


def in_chunks(frames: np.ndarray, size: int) -> list[FrameChunk]:
    """Frames already in memory as the decoder would chunk them (times at 30 fps)."""
    return [FrameChunk(index=k, frames=frames[start:start + size],
                       source_indices=np.arange(start, min(start + size, len(frames))),
                       times=np.arange(start, min(start + size, len(frames))) / 30.0, first_frame=start,
                       is_last=start + size >= len(frames), cursor=DecodeCursor())
            for k, start in enumerate(range(0, len(frames), size))]


def test_a_cut_restarts_the_background_and_ends_the_tracks(contract):
    """At frame 60 the shot changes (another background, dimmer light, the same people):
    the tracks before the cut end there, and after the people have walked clear of where
    they stood at the cut, they are tracked as well as in any other video."""
    cut = 60
    before, after = crossing_scene(), dataclasses.replace(crossing_scene(), seed=7)
    shot_1, shot_2 = synthetic.Renderer(before), synthetic.Renderer(after)
    frames = np.stack([shot_1.render(i) for i in range(cut)]
                      + [shot_2.render(i) // 2 for i in range(cut, after.frame_count)])
    engine = MotionEngine()
    session = engine.open(VideoSpec(after.width, after.height, after.fps))
    result = contract.collect([session.process(chunk) for chunk in in_chunks(frames, 50)], engine.holdback_frames)
    ids_before = {i for people in result[:cut] for i in people}
    ids_after = {i for people in result[cut:] for i in people}
    assert ids_before and ids_after and not ids_before & ids_after
    metrics = evaluate(after, [{}] * cut + result[cut:], skip=cut + 20)
    print(metrics)
    assert metrics.precision >= 0.95 and metrics.recall >= 0.95
    assert metrics.transfers == 0 and not any(metrics.switches.values())


def test_engine_reports_boxes_only_and_says_what_it_is(crossing_run):
    info = MotionEngine().info
    assert info.name == "motion" and not info.provides_3d and info.joint_format is None
    assert "not a pose model" in info.description.lower()
    people = [p for frame in crossing_run.frames for p in frame.values()]
    assert people and all(p.smpl is None and p.joints_3d is None and p.joints_2d is None
                          and p.translation is None for p in people)
    assert all(p.bbox.dtype == np.float32 and p.bbox.shape == (4,) for p in people)
    assert all(0.0 < p.score <= 1.0 for p in people)
    assert all(0 <= p.bbox[0] < p.bbox[2] <= 320 and 0 <= p.bbox[1] < p.bbox[3] <= 180 for p in people)


# --- chunking and state ----------------------------------------------------------------------


@pytest.mark.parametrize("video", ["crossing_video", "first_frame_video"])
@pytest.mark.slow
def test_result_does_not_depend_on_the_chunk_size(contract, video, request):
    path = request.getfixturevalue(video)
    reference = run_engine(contract, path, chunk_frames=None).frames  # the whole video in one chunk
    for chunk_frames in (1, 7):
        assert_same_result(run_engine(contract, path, chunk_frames).frames, reference)


def test_corrections_reach_exactly_the_holdback_window(contract, crossing_video):
    engine = MotionEngine()
    assert engine.holdback_frames == engine.options.n_init - 1
    run = run_engine(contract, crossing_video, chunk_frames=1)  # contract.collect() checks every correction's reach
    reach = [output.frames[0].index - index for output in run.outputs for index, _ in output.corrections]
    assert reach and max(reach) == engine.holdback_frames
    # back-filled people are the detections of the track before it was confirmed
    assert all(person.detected for output in run.outputs for _, person in output.corrections)


_RESUME_SCRIPT = textwrap.dedent("""
    import pickle, sys
    from pose_pipeline.engines.motion import MotionEngine
    from pose_pipeline.video import ChunkDecoder, DecodeOptions, probe
    video, chunk_bytes, jobs = pickle.load(sys.stdin.buffer)
    info = probe(video)
    results = []
    for state, cursor in jobs:
        session = MotionEngine().restore(state)  # the options travel in the state
        with ChunkDecoder(video, info, DecodeOptions(chunk_bytes=chunk_bytes), cursor) as decoder:
            results.append([session.process(chunk) for chunk in decoder])
    pickle.dump(results, sys.stdout.buffer)
""")


def resume_points(outputs: list[ChunkOutput]) -> list[int]:
    """Chunks (of one frame each) to resume after: a few spread over the video, and some
    after which the state holds something hard to carry over: a tentative track with
    held-back hits (the next chunk back-fills across the boundary), and tracks coasting or
    in a merged group (reported with ``detected=False``)."""
    spread = range(0, len(outputs) - 1, len(outputs) // 3)
    held = [k for k, output in enumerate(outputs[1:]) if len(output.corrections) >= 2]
    coasting = [k for k, output in enumerate(outputs[:-1]) if any(not p.detected for p in output.frames[0].people)]
    return sorted({*spread, *held[:2], *coasting[:: max(len(coasting) // 2, 1)]})


@pytest.mark.slow
def test_export_after_chunk_k_and_resume_in_a_new_process(contract, crossing_video, crossing_run):
    """State exported after chunk k, restored in another Python process that decodes from
    chunk k's cursor (with another chunk size), continues exactly as the uninterrupted run."""
    points = set(resume_points(run_engine(contract, crossing_video, chunk_frames=1).outputs))
    assert len(points) >= 6
    info = probe(crossing_video)
    engine = MotionEngine()
    session = engine.open(VideoSpec(*info.display_size, info.fps))
    outputs, jobs = [], []
    with ChunkDecoder(crossing_video, info, decode_options(crossing_video, 1)) as decoder:
        for k, chunk in enumerate(decoder):
            outputs.append(session.process(chunk))
            if k in points:
                jobs.append((k, session.export_state(), chunk.cursor))
    chunk_bytes = decode_options(crossing_video, 16).chunk_bytes
    child = subprocess.run([sys.executable, "-c", _RESUME_SCRIPT], capture_output=True, check=True, timeout=120,
                           input=pickle.dumps((str(crossing_video), chunk_bytes, [job[1:] for job in jobs])))
    for (k, _, _), rest in zip(jobs, pickle.loads(child.stdout)):
        assert_same_result(contract.collect(outputs[:k + 1] + rest, engine.holdback_frames), crossing_run.frames)


def test_state_is_deterministic_and_round_trips(crossing_video):
    info = probe(crossing_video)
    engine = MotionEngine(n_init=2, max_age=20)
    session = engine.open(VideoSpec(*info.display_size, info.fps))
    assert engine.restore(session.export_state()).export_state() == session.export_state()
    with ChunkDecoder(crossing_video, info, decode_options(crossing_video, 40)) as decoder:
        session.process(decoder.next_chunk())
    state = session.export_state()
    assert state == session.export_state()
    restored = MotionEngine().restore(state)  # an engine with other options: the state's win
    assert restored.options == engine.options
    assert restored.export_state() == state
    for damaged in (b"not a state", state[:100], state.replace(b'"format": 2', b'"format": 9')):
        with pytest.raises(InternalError):
            engine.restore(damaged)


def test_session_refuses_chunks_out_of_order(crossing_video):
    info = probe(crossing_video)
    session = MotionEngine().open(VideoSpec(*info.display_size, info.fps))
    with ChunkDecoder(crossing_video, info, decode_options(crossing_video, 5)) as decoder:
        decoder.next_chunk()
        with pytest.raises(InternalError):
            session.process(decoder.next_chunk())


def test_options_through_the_registry():
    engine = EngineRegistry().create("motion", {"n_init": 5, "work_side": 160, "aspect_range": [1.0, 4.0]})
    assert engine.holdback_frames == 4 and engine.options.aspect_range == (1.0, 4.0)
    with pytest.raises(InvalidOption):
        EngineRegistry().create("motion", {"n_init": 0})
    with pytest.raises(InvalidOption):
        EngineRegistry().create("motion", {"no_such_option": 1})


# --- the scene generator ---------------------------------------------------------------------


def test_ground_truth_boxes_are_the_drawn_pixels():
    """With no noise, the pixels that differ from the empty background are exactly inside
    the ground-truth box and touch all four of its sides."""
    figure = Figure(1, ((0.0, 0.2, 0.9), (1.0, 0.8, 0.7)), height=0.5, **RED)
    scene = Scene(160, 120, fps=10.0, duration_s=1.0, figures=(figure,), noise=0.0)
    empty = synthetic.render(Scene(160, 120, 10.0, 1.0, figures=(), noise=0.0), 0)
    renderer = synthetic.Renderer(scene)
    for index in range(scene.frame_count):
        changed = np.any(renderer.render(index) != empty, axis=2)
        rows, cols = np.nonzero(changed)
        (truth,) = renderer.ground_truth(index)
        assert [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1] == truth.box.tolist()


def test_rendering_is_deterministic_and_seeded():
    scene = synthetic.demo_scene(duration_s=3.0, size=(160, 90), seed=4)
    assert np.array_equal(synthetic.render(scene, 40), synthetic.render(scene, 40))
    other = synthetic.demo_scene(duration_s=3.0, size=(160, 90), seed=5)
    assert not np.array_equal(synthetic.render(scene, 40), synthetic.render(other, 40))
    assert len(scene.figures) == 3
