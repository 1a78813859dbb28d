"""Temporal smoothing (pose_pipeline/results/smoothing.py): on a real clip tracked by the real blazepose
engine (carphone: one man talking in a moving car, 120 frames), jitter against fidelity;
lag on synthetic steps and ramps; chunked against whole; SO(3) filtering across the π
boundary of axis-angle; gaps, coasting rows, low-confidence joints, betas; every bad option.
Results with SMPL are built by hand (the phalp engine needs a GPU stack)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pose_pipeline.assets.clips import CARPHONE, clip
from pose_pipeline.config import Settings
from pose_pipeline.engines.blazepose import BlazePoseEngine
from pose_pipeline.engines.blazepose.models import MODELS, default_models_dir
from pose_pipeline.errors import InternalError, InvalidOption
from pose_pipeline.options import JobOptions
from pose_pipeline.pipeline import track_file
from pose_pipeline.results.schema import Frame, Person, SmplParams
from pose_pipeline.results.writers import MemoryWriter
from pose_pipeline.results.smoothing import (
    PRESETS,
    OneEuroFilter,
    OneEuroParams,
    RotationFilter,
    Smoother,
    SmoothingOptions,
    frames_to_reach,
    jitter,
    ramp_lag,
    smooth_frames,
    step_response,
)

VISIBLE = 0.5
FPS = 30.0


@pytest.fixture(scope="module")
def carphone_result():
    directory = default_models_dir()
    if MODELS.missing(directory):
        MODELS.fetch(directory)
    writer = MemoryWriter()
    track_file(clip(CARPHONE), BlazePoseEngine(models_dir=str(directory)), Settings(), JobOptions(), writer)
    return writer.result


def exact(frames) -> list:
    """Every value of every person, as bytes: equal means bit for bit."""
    out = []
    for frame in frames:
        for p in frame.people:
            smpl = () if p.smpl is None else (p.smpl.global_orient.tobytes(), p.smpl.body_pose.tobytes(),
                                              p.smpl.betas.tobytes())
            out.append((frame.index, p.track_id, p.detected, p.score, p.bbox.tobytes(), *smpl,
                        *(None if a is None else a.tobytes()
                          for a in (p.translation, p.joints_3d, p.joints_2d, p.joints_confidence))))
    return out


def visible_deviation(raw_frames, smoothed_frames) -> np.ndarray:
    """Distances (px) between raw and smoothed visible 2D joints."""
    found = []
    for raw, smooth in zip(raw_frames, smoothed_frames):
        for p, q in zip(raw.people, smooth.people):
            if p.joints_2d is not None:
                found.append(np.linalg.norm(p.joints_2d - q.joints_2d, axis=1)[p.joints_confidence >= VISIBLE])
    return np.concatenate(found)


# --- the real clip ---------------------------------------------------------------------------


@pytest.mark.slow
def test_every_preset_lowers_jitter_on_a_real_clip_and_stays_close_to_the_measurements(carphone_result):
    frames, fps = carphone_result.frames, carphone_result.header.video.fps
    raw_2d, raw_3d = jitter(frames, "joints_2d", VISIBLE), jitter(frames, "joints_3d", VISIBLE)
    assert raw_2d > 1.0  # px/frame²: the raw skeleton does jitter (the filter has work to do)
    ratios = {}
    for name in ("light", "medium", "strong"):
        smoothed = list(smooth_frames(frames, PRESETS[name], fps))
        ratios[name] = (jitter(smoothed, "joints_2d", VISIBLE) / raw_2d,
                        jitter(smoothed, "joints_3d", VISIBLE) / raw_3d)
        # smoothing, not freezing: the visible joints stay within a few pixels of the engine's
        deviation = visible_deviation(frames, smoothed)
        assert np.median(deviation) < {"light": 1.5, "medium": 2.5, "strong": 4.0}[name], name
    assert ratios["light"][0] < 0.5 and ratios["light"][1] < 0.5
    assert ratios["medium"][0] < 0.3 and ratios["medium"][1] < 0.3
    assert ratios["strong"][0] < 0.15 and ratios["strong"][1] < 0.15
    assert ratios["strong"] < ratios["medium"] < ratios["light"]


def test_off_returns_the_frames_unchanged(carphone_result):
    frames = carphone_result.frames
    assert all(a is b for a, b in zip(smooth_frames(frames, PRESETS["off"], FPS), frames))
    assert SmoothingOptions.parse(None) == PRESETS["off"] and not PRESETS["off"].enabled


@pytest.mark.parametrize("cuts", [(1,), (7, 8, 50), tuple(range(1, 120))])
def test_chunked_with_the_state_carried_equals_one_run_exactly(carphone_result, cuts):
    frames, fps = carphone_result.frames, carphone_result.header.video.fps
    options = PRESETS["medium"]
    whole = list(smooth_frames(frames, options, fps))
    chunked, state = [], None
    for start, end in zip((0, *cuts), (*cuts, len(frames))):
        smoother = Smoother(options, fps) if state is None else Smoother.restore(state)
        chunked += smoother.apply_chunk(frames[start:end])
        state = smoother.export_state()
    assert exact(chunked) == exact(whole)
    assert exact(whole) != exact(frames)


def test_chunked_equals_whole_with_smpl_rotations_betas_gaps_and_coasting():
    frames = smpl_frames(60, seed=3)
    whole = list(smooth_frames(frames, PRESETS["strong"], FPS))
    chunked, state = [], None
    for start in range(0, 60, 11):
        smoother = Smoother(PRESETS["strong"], FPS) if state is None else Smoother.restore(state)
        chunked += smoother.apply_chunk(frames[start:start + 11])
        state = smoother.export_state()
    assert exact(chunked) == exact(whole)


def test_a_restored_smoother_keeps_the_parameters_it_ran_with():
    options = SmoothingOptions.parse({"preset": "light", "pixels": {"beta": 0.25}, "betas_frames": 5})
    restored = Smoother.restore(Smoother(options, 25.0).export_state())
    assert restored.options == options and restored.fps == 25.0


def test_a_damaged_state_or_frames_out_of_order_are_internal_errors():
    with pytest.raises(InternalError):
        Smoother.restore(b"not a state")
    state = Smoother(PRESETS["medium"], FPS).export_state()
    with pytest.raises(InternalError):
        Smoother.restore(state[:-3] + b"}}}")
    smoother = Smoother(PRESETS["medium"], FPS)
    smoother.apply(Frame(0, 0, 0.0))
    with pytest.raises(InternalError, match="expected 1"):
        smoother.apply(Frame(2, 2, 2 / FPS))


# --- lag -------------------------------------------------------------------------------------


def test_lag_on_a_ramp_is_the_low_pass_time_constant_without_beta_and_falls_as_beta_rises():
    # beta 0 is a first-order low-pass: its steady lag is tau = 1 / (2 pi f_c) seconds.
    for cutoff in (0.5, 1.5, 4.0):
        assert ramp_lag(OneEuroParams(cutoff, 0.0), FPS, 1.0) == pytest.approx(FPS / (2 * math.pi * cutoff), rel=1e-6)
    lags = [ramp_lag(OneEuroParams(1.0, beta), FPS, 1.0) for beta in (0.0, 0.5, 2.0, 8.0, 32.0)]
    assert all(a > b for a, b in zip(lags, lags[1:])) and lags[-1] < 0.5


def test_a_step_is_followed_within_bounded_frames_sooner_for_higher_beta():
    reach = [frames_to_reach(step_response(OneEuroParams(1.0, beta), FPS), 0.9) for beta in (0.0, 1.0, 4.0, 16.0)]
    assert all(a > b for a, b in zip(reach, reach[1:]))
    assert reach[0] == math.ceil(math.log(0.1) / math.log(1 - 1 / (1 + FPS / (2 * math.pi))))  # plain low-pass


@pytest.mark.parametrize("name", ["light", "medium", "strong"])
def test_presets_lag_a_bounded_number_of_frames(name):
    pixels = PRESETS[name].pixels
    bound = {"light": 1.5, "medium": 2.5, "strong": 5.0}[name]
    assert ramp_lag(pixels, FPS, 0.3) < bound  # box heights per second: a slow walk
    assert ramp_lag(pixels, FPS, 1.0) < bound
    step = step_response(pixels, FPS, 0.1)  # a jump of a tenth of the person's height
    assert frames_to_reach(step, 0.9, 0.1) <= {"light": 5, "medium": 8, "strong": 16}[name]
    rotations = PRESETS[name].rotations
    assert rotation_ramp_lag(rotations, 1.0) < bound + 0.5


def rotation_ramp_lag(params: OneEuroParams, speed: float, frames: int = 150) -> float:
    axis = np.array([0.2, -0.6, 0.77]) / np.linalg.norm([0.2, -0.6, 0.77])
    filt = RotationFilter(params)
    for i in range(frames):
        out = filt.step((axis * speed * i / FPS)[None], 1 / FPS)
    truth = Rotation.from_rotvec(axis * speed * (frames - 1) / FPS)
    return float((Rotation.from_rotvec(out).inv() * truth).magnitude()[0] / (speed / FPS))


def test_the_rotation_filter_lags_a_constant_spin_as_the_scalar_filter_lags_a_ramp():
    # along a geodesic, the SO(3) filter is the scalar one: the same lag, whatever the axis
    for params in (OneEuroParams(1.5, 0.0), OneEuroParams(1.5, 0.3), OneEuroParams(0.5, 1.0)):
        assert rotation_ramp_lag(params, 2.0) == pytest.approx(ramp_lag(params, FPS, 2.0, frames=150), rel=1e-6)


# --- SO(3) -----------------------------------------------------------------------------------


def test_a_spin_through_pi_stays_continuous_where_filtering_axis_angle_would_jump():
    axis = np.array([0.0, 0.6, 0.8])
    angles = np.linspace(2.6, 3.8, 40)  # crosses π: axis-angle flips from ~+π·a to ~−π·a
    rotvecs = Rotation.from_rotvec(angles[:, None] * axis).as_rotvec()
    assert np.linalg.norm(rotvecs[1:] - rotvecs[:-1], axis=1).max() > 5.0  # the input's representation jumps
    filt = RotationFilter(OneEuroParams(1.5, 0.3))
    smoothed = Rotation.from_rotvec(np.stack([filt.step(r[None], 1 / FPS)[0] for r in rotvecs]))
    steps = (smoothed[:-1].inv() * smoothed[1:]).magnitude()
    raw_step = angles[1] - angles[0]
    # no jump: each step is at most about the input's (the filter catches up a little as its
    # speed estimate grows) and the steps change smoothly
    assert steps.max() < 1.1 * raw_step and np.abs(np.diff(steps)).max() < 0.25 * raw_step
    assert (Rotation.from_rotvec(rotvecs[-1:]).inv() * smoothed[-1:]).magnitude()[0] < 10 * raw_step
    # the naive filter on the vectors' components (what this module never does) jumps
    naive = OneEuroFilter(OneEuroParams(1.5, 0.3))
    naive_out = Rotation.from_rotvec(np.stack([naive.step(r[None], 1 / FPS)[0] for r in rotvecs]))
    assert (naive_out[:-1].inv() * naive_out[1:]).magnitude().max() > 5 * raw_step


def test_the_same_rotation_given_as_either_axis_angle_at_pi_is_held():
    # (π, 0, 0) and (−π, 0, 0) are one rotation (a person facing the camera has global_orient
    # near it): alternating them with noise must not pull the filter towards the identity.
    rng = np.random.default_rng(0)
    filt = RotationFilter(OneEuroParams(1.0, 0.3))
    target = Rotation.from_rotvec([math.pi, 0.0, 0.0])
    for i in range(60):
        noisy = target * Rotation.from_rotvec(rng.normal(0, 0.02, 3))
        vec = noisy.as_rotvec()
        out = filt.step((vec if i % 2 else -vec * (2 * math.pi - np.linalg.norm(vec)) / np.linalg.norm(vec))[None],
                        1 / FPS)
    assert (Rotation.from_rotvec(out).inv() * target).magnitude()[0] < 0.03
    assert np.linalg.norm(out) <= math.pi + 1e-9


def test_smoothing_lowers_rotation_jitter_without_leaving_the_pose():
    frames = smpl_frames(90, seed=1, gaps=False, noise=0.05)
    smoothed = list(smooth_frames(frames, PRESETS["medium"], FPS))

    def angular_accel(fs):
        r = np.stack([p.smpl.body_pose for f in fs for p in f.people if p.track_id == 1])
        rot = Rotation.from_rotvec(r.reshape(-1, 3)).as_matrix().reshape(len(r), 23, 3, 3)
        vel = np.einsum("tjik,tjil->tjkl", rot[:-1], rot[1:])  # R_t^T R_t+1
        w = Rotation.from_matrix(vel.reshape(-1, 3, 3)).as_rotvec().reshape(len(r) - 1, 23, 3)
        return np.linalg.norm(w[1:] - w[:-1], axis=-1).mean()

    assert angular_accel(smoothed) < 0.4 * angular_accel(frames)
    truth = Rotation.from_rotvec(np.stack([clean_pose(i) for i in range(90)]).reshape(-1, 3))
    out = Rotation.from_rotvec(np.stack([f.people[0].smpl.body_pose for f in smoothed]).reshape(-1, 3))
    raw = Rotation.from_rotvec(np.stack([f.people[0].smpl.body_pose for f in frames]).reshape(-1, 3))
    assert np.median((truth.inv() * out).magnitude()) < np.median((truth.inv() * raw).magnitude())


# --- gaps, coasting, confidence, betas -------------------------------------------------------


def person(track_id=1, x=0.0, detected=True, confidence=None, joints=None):
    joints = np.full((3, 2), x, np.float32) if joints is None else joints
    return Person(track_id, np.array([x, 0, x + 50, 100], np.float32), 0.9, detected, None, None,
                  np.zeros((3, 3), np.float32) + np.float32(x / 100), joints if detected else None,
                  None if confidence is None else np.asarray(confidence, np.float32))


def test_the_filter_restarts_after_a_gap_and_passes_coasting_rows_through():
    smoother = Smoother(PRESETS["strong"], FPS)
    out = [smoother.apply(Frame(0, 0, 0.0, (person(x=0.0),)))]
    out.append(smoother.apply(Frame(1, 1, 1 / FPS, (person(x=20.0),))))
    coasting = person(x=21.0, detected=False)
    out.append(smoother.apply(Frame(2, 2, 2 / FPS, (coasting,))))
    out.append(smoother.apply(Frame(3, 3, 3 / FPS, (person(x=40.0),))))
    out.append(smoother.apply(Frame(4, 4, 4 / FPS, ())))  # absent
    out.append(smoother.apply(Frame(5, 5, 5 / FPS, (person(x=80.0),))))
    out.append(smoother.apply(Frame(6, 6, 6 / FPS, (person(x=90.0),))))
    assert out[0].people[0].bbox[0] == 0.0
    assert 0.0 < out[1].people[0].bbox[0] < 20.0  # filtered
    assert out[2].people[0] is coasting  # the tracker's guess, as it is
    assert out[3].people[0].bbox[0] == 40.0 and out[5].people[0].bbox[0] == 80.0  # restarts
    assert 80.0 < out[6].people[0].bbox[0] < 90.0


def test_timestamps_that_do_not_advance_use_the_nominal_rate():
    a, b = Smoother(PRESETS["medium"], FPS), Smoother(PRESETS["medium"], FPS)
    a.apply(Frame(0, 0, 0.0, (person(x=0.0),)))
    b.apply(Frame(0, 0, 1.0, (person(x=0.0),)))
    same = a.apply(Frame(1, 1, 1 / FPS, (person(x=10.0),))).people[0].bbox
    stuck = b.apply(Frame(1, 1, 1.0, (person(x=10.0),))).people[0].bbox
    assert np.array_equal(same, stuck)


def test_a_guessed_joint_does_not_open_the_filter_but_is_never_left_behind():
    # joint 0 confident, joint 1 a guess (confidence 0.05), joint 2 at the threshold: all jump by 30 px
    smoother = Smoother(PRESETS["medium"], FPS)
    confidence = [0.99, 0.05, 0.5]
    track = []
    for i in range(40):
        x = 0.0 if i < 5 else 30.0
        joints = np.full((3, 2), x, np.float32)
        track.append(smoother.apply(Frame(i, i, i / FPS, (person(joints=joints, confidence=confidence),))).people[0])
    after_jump = track[6].joints_2d[:, 0]
    assert after_jump[0] > after_jump[1] + 3.0  # the confident joint follows the jump faster
    assert after_jump[2] == pytest.approx(after_jump[0])  # at the threshold: a confident joint
    assert track[-1].joints_2d[1, 0] > 29.0  # the guess converges too: not held
    plain = Smoother(replace(PRESETS["medium"], min_confidence=0.0), FPS)
    for i in range(7):
        x = 0.0 if i < 5 else 30.0
        last = plain.apply(Frame(i, i, i / FPS, (person(joints=np.full((3, 2), x, np.float32),
                                                        confidence=confidence),))).people[0]
    assert np.allclose(last.joints_2d[:, 0], last.joints_2d[0, 0])  # min_confidence 0: all alike


def test_betas_are_a_running_median_frozen_after_betas_frames_and_kept_over_gaps():
    options = replace(PRESETS["medium"], betas_frames=5)
    smoother = Smoother(options, FPS)
    values = [1.0, 1.2, 50.0, 0.8, 1.1, 9.0, -9.0]  # an outlier among the first five; later ones ignored
    out = []
    for i, v in enumerate(values):
        p = smpl_person(i, betas=np.full(10, v, np.float32))
        out.append(smoother.apply(Frame(i, i, i / FPS, (p,))).people[0].smpl.betas[0])
    assert out[0] == 1.0 and out[2] == pytest.approx(1.2)  # median of 1.0, 1.2, 50
    assert out[4] == out[5] == out[6] == pytest.approx(1.1)  # frozen: median of the first five
    smoother.apply(Frame(7, 7, 7 / FPS, ()))  # a gap
    back = smoother.apply(Frame(8, 8, 8 / FPS, (smpl_person(8, betas=np.full(10, 3.0, np.float32)),)))
    assert back.people[0].smpl.betas[0] == pytest.approx(1.1)


# --- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value, option", [
    ("gentle", "smooth"), (3, "smooth"), (["medium"], "smooth"),
    ({"preset": "nope"}, "smooth.preset"), ({"preset": 2}, "smooth.preset"),
    ({"window": 5}, "smooth.window"),
    ({"preset": "off", "pixels": {"beta": 1.0}}, "smooth.preset"),
    ({"pixels": 1.0}, "smooth.pixels"), ({"pixels": {"gain": 1.0}}, "smooth.pixels.gain"),
    ({"pixels": {"min_cutoff": 0}}, "smooth.pixels.min_cutoff"),
    ({"pixels": {"min_cutoff": -1}}, "smooth.pixels.min_cutoff"),
    ({"metres": {"min_cutoff": float("nan")}}, "smooth.metres.min_cutoff"),
    ({"metres": {"min_cutoff": 1e9}}, "smooth.metres.min_cutoff"),
    ({"rotations": {"beta": -0.1}}, "smooth.rotations.beta"),
    ({"rotations": {"beta": float("inf")}}, "smooth.rotations.beta"),
    ({"rotations": {"beta": "fast"}}, "smooth.rotations.beta"),
    ({"translation": {"beta": True}}, "smooth.translation.beta"),
    ({"translation": {"d_cutoff": 0.0}}, "smooth.translation.d_cutoff"),
    ({"translation": {"d_cutoff": None}}, "smooth.translation.d_cutoff"),
    ({"min_confidence": 1.5}, "smooth.min_confidence"), ({"min_confidence": -0.1}, "smooth.min_confidence"),
    ({"min_confidence": "nan"}, "smooth.min_confidence"),
    ({"betas_frames": 0}, "smooth.betas_frames"), ({"betas_frames": 1.5}, "smooth.betas_frames"),
    ({"betas_frames": "many"}, "smooth.betas_frames"), ({"betas_frames": True}, "smooth.betas_frames"),
    ({"betas_frames": 10**6}, "smooth.betas_frames"),
])
def test_every_bad_option_is_invalid_option_naming_the_field(value, option):
    with pytest.raises(InvalidOption) as caught:
        SmoothingOptions.parse(value)
    assert caught.value.option == option and caught.value.status == 422
    assert option.split(".")[-1] in caught.value.message


def test_good_options_parse_and_round_trip():
    assert SmoothingOptions.parse("strong") is PRESETS["strong"]
    assert SmoothingOptions.parse(" light ") is PRESETS["light"]
    custom = SmoothingOptions.parse({"pixels": {"beta": "2.5"}, "min_confidence": 0, "betas_frames": "12"})
    assert custom.preset == "medium" and custom.pixels == replace(PRESETS["medium"].pixels, beta=2.5)
    assert custom.min_confidence == 0.0 and custom.betas_frames == 12
    for options in (*PRESETS.values(), custom):
        if options.enabled:
            assert SmoothingOptions.parse(options.to_dict()) == options


# --- SMPL frames made by hand ----------------------------------------------------------------


def clean_pose(i: int) -> np.ndarray:
    """A smooth (23, 3) body pose at frame i: each joint swinging about its own axis."""
    rng = np.random.default_rng(42)
    axes = rng.normal(size=(23, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    amplitude, phase = rng.uniform(0.2, 1.2, 23), rng.uniform(0, 2 * math.pi, 23)
    return axes * (amplitude * np.sin(2 * math.pi * 0.5 * i / FPS + phase))[:, None]


def smpl_person(i: int, track_id: int = 1, detected: bool = True, noise: float = 0.0, betas=None,
                rng: np.random.Generator | None = None) -> Person:
    rng = rng or np.random.default_rng(i)
    pose = Rotation.from_rotvec(clean_pose(i)) * Rotation.from_rotvec(rng.normal(0, noise, (23, 3)))
    orient = Rotation.from_rotvec([math.pi, 0, 0]) * Rotation.from_rotvec([0, 0.05 * i, 0])  # turning round
    return Person(track_id, np.array([100 + i, 50, 300 + i, 500], np.float32), 0.95, detected,
                  SmplParams(orient.as_rotvec().astype(np.float32), pose.as_rotvec().astype(np.float32),
                             rng.normal(0, 1, 10).astype(np.float32) if betas is None else betas),
                  np.array([0.1 * i / FPS, 0.3, 40 + rng.normal(0, 0.5)], np.float32),
                  rng.normal(0, 0.3, (44, 3)).astype(np.float32), rng.uniform(0, 1000, (44, 2)).astype(np.float32))


def smpl_frames(n: int, seed: int, gaps: bool = True, noise: float = 0.05) -> tuple[Frame, ...]:
    """Two tracks with SMPL: track 2 absent now and then, coasting (detected false) at times."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        people = [smpl_person(i, 1, noise=noise, rng=rng)]
        if not gaps or i % 13 not in (5, 6):
            people.append(smpl_person(i, 2, detected=not (gaps and i % 17 == 3), noise=noise, rng=rng))
        frames.append(Frame(i, 2 * i, i / FPS, tuple(people)))
    return tuple(frames)
