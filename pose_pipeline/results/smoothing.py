"""Temporal smoothing of a result, per track and causal, so that it can run frame by frame in
the aggregation stage and continue in another process from an exported state.

What is filtered, and how (docs/result-schema.md, "Temporal smoothing", has the reasons and
the figures):

- ``bbox`` and ``joints_2d`` (pixels), ``joints_3d`` and ``vertices`` (metres) and
  ``translation`` (metres):
  a One Euro filter (Casiez, Roussel and Vogel, "1€ Filter: A Simple Speed-based Low-pass
  Filter for Noisy Input in Interactive Systems", CHI 2012) per point. A low-pass filter
  whose cutoff rises with the point's speed: ``cutoff = min_cutoff + beta * |speed|``, the
  speed itself low-passed at ``d_cutoff``. Slow motion is smoothed hard (jitter goes), fast
  motion lightly (little lag). The speed of a point is the norm of its velocity vector, so
  the filter does not depend on the direction of the image or camera axes. Pixel speeds are
  divided by the height of the person's box, so that a preset means the same for a
  close-up and for a person far away, at any resolution.
- SMPL rotations (``global_orient``, ``body_pose``): the same filter on SO(3), never on the
  axis-angle vectors. The step from the smoothed rotation towards the new one is the
  relative rotation ``R_prev⁻¹ R_new`` (its shortest rotation vector), the speed is its
  angle per second, and the smoothed rotation moves a fraction ``alpha`` along that
  geodesic (a slerp). Axis-angle's wrap at π and the quaternion's double cover never enter.
- ``betas``: the element-wise median of the track's first ``betas_frames`` detections,
  then frozen: a causal filter cannot know the future, so the shape is a running robust
  estimate that settles after ``betas_frames`` detections and stays constant from then on.
  Betas are the person's, not the motion's: they survive a track's gaps.

Gaps. A row with ``detected: false`` is the tracker's guess, not a measurement: it is passed
through unchanged (but for its betas, which are the track's) and does not enter the filter.
The motion filters of a track restart (the next detection is output as it is and starts a
new history) after any frame where the track is absent or not detected: a person who
reappears may have moved anywhere.

Low-confidence joints (blazepose's ``joints_confidence``). A joint whose confidence ``c`` is
under ``min_confidence`` has its ``beta`` scaled by ``c / min_confidence``: a guess that
jumps does not open its filter, so it is smoothed as if it stood still (at ``min_cutoff``),
yet it is never held: it follows the body with the slow filter's lag, and is not left
behind when the person moves. Continuous in ``c``: nothing jumps at the threshold.

State. ``Smoother.export_state()`` gives bytes (``engines.state_codec``: a JSON header and
raw arrays) from which ``Smoother.restore`` continues exactly: a video smoothed in chunks,
the state carried from one to the next, gives bit for bit the frames of one run. It holds
the filters of the tracks in the last frame (a few kB each) and the betas samples of tracks
with SMPL (at most ``betas_frames`` x 10 floats each).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from ..engines.state_codec import pack_state, unpack_state
from ..errors import InternalError
from .schema import Frame, Person, SmplParams
from .smoothing_options import PRESETS, OneEuroParams, SmoothingOptions, exact_options

__all__ = ["OneEuroParams", "SmoothingOptions", "PRESETS", "OneEuroFilter", "RotationFilter", "Smoother",
           "smooth_frames", "jitter", "step_response", "frames_to_reach", "ramp_lag"]

_MAGIC = b"pose-pipeline smoothing v1\n"


# --- filters ---------------------------------------------------------------------------------


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray:
    """Smoothing factor of a first-order low-pass at ``cutoff`` Hz sampled every ``dt`` s."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One Euro filter of N points of D coordinates (``x``: (N, D)), each with its own cutoff.

    ``step(x, dt, scale, weight)``: ``scale`` divides speeds before they raise the cutoff
    (pixels: the box height); ``weight`` (N,) in [0, 1] scales each point's ``beta``
    (confidence). The first step returns ``x`` as it is.
    """

    def __init__(self, params: OneEuroParams) -> None:
        self.params = params
        self.value: np.ndarray | None = None  # (N, D) float64, the smoothed points
        self.speed: np.ndarray | None = None  # (N, D) float64, the low-passed velocity

    def step(self, x: np.ndarray, dt: float, scale: float = 1.0, weight: np.ndarray | None = None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.value is None or self.value.shape != x.shape:
            self.value, self.speed = x.copy(), np.zeros_like(x)
            return self.value
        p = self.params
        beta = p.beta if weight is None else p.beta * np.asarray(weight, dtype=np.float64).reshape(-1, 1)
        velocity = (x - self.value) / dt
        self.speed = self.speed + _alpha(p.d_cutoff, dt) * (velocity - self.speed)
        cutoff = p.min_cutoff + beta * np.linalg.norm(self.speed, axis=1, keepdims=True) / scale
        self.value = self.value + _alpha(cutoff, dt) * (x - self.value)
        return self.value

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        if self.value is None or self.speed is None:
            return {}
        return {prefix + ".value": self.value, prefix + ".speed": self.speed}

    def load(self, arrays: Mapping[str, np.ndarray], prefix: str) -> None:
        if prefix + ".value" in arrays:
            self.value, self.speed = arrays[prefix + ".value"], arrays[prefix + ".speed"]


class RotationFilter:
    """One Euro filter on SO(3) of N rotations, given and returned as rotation vectors (N, 3).

    The innovation is the relative rotation from the smoothed rotation to the new one, in
    the smoothed rotation's own frame (its shortest rotation vector, angle <= π); the speed
    is that vector per second, low-passed; the smoothed rotation advances by ``alpha`` of the
    innovation along the geodesic. Only relative rotations are ever formed, so a rotation
    whose axis-angle crosses π, or whose quaternion flips sign, is continuous here.
    """

    def __init__(self, params: OneEuroParams) -> None:
        self.params = params
        self.quat: np.ndarray | None = None  # (N, 4) float64 scalar-last, the smoothed rotations
        self.speed: np.ndarray | None = None  # (N, 3) float64 rad/s, in each rotation's frame

    def step(self, rotvec: np.ndarray, dt: float) -> np.ndarray:
        measured = Rotation.from_rotvec(np.asarray(rotvec, dtype=np.float64).reshape(-1, 3))
        if self.quat is None or len(self.quat) != len(measured):
            self.quat, self.speed = measured.as_quat(), np.zeros((len(measured), 3))
            return measured.as_rotvec()
        p = self.params
        current = Rotation.from_quat(self.quat)
        innovation = (current.inv() * measured).as_rotvec()
        self.speed = self.speed + _alpha(p.d_cutoff, dt) * (innovation / dt - self.speed)
        cutoff = p.min_cutoff + p.beta * np.linalg.norm(self.speed, axis=1, keepdims=True)
        smoothed = current * Rotation.from_rotvec(_alpha(cutoff, dt) * innovation)
        self.quat = smoothed.as_quat()
        return smoothed.as_rotvec()

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        if self.quat is None or self.speed is None:
            return {}
        return {prefix + ".quat": self.quat, prefix + ".speed": self.speed}

    def load(self, arrays: Mapping[str, np.ndarray], prefix: str) -> None:
        if prefix + ".quat" in arrays:
            self.quat, self.speed = arrays[prefix + ".quat"], arrays[prefix + ".speed"]


# --- per track -------------------------------------------------------------------------------

_POINT_FIELDS = ("bbox", "joints_2d", "joints_3d", "translation", "vertices")


class _Track:
    """The filters of one track since its last restart, and its betas samples."""

    def __init__(self, options: SmoothingOptions) -> None:
        self.options = options
        self.last_index = -2  # frame index of the last detection that entered the filters
        self.last_time = 0.0
        self.scale = 1.0  # smoothed box height at the last step, pixels
        self.betas: list[np.ndarray] = []
        self._fresh()

    def forget_motion(self) -> None:
        self.last_index = -2
        self._fresh()

    def _fresh(self) -> None:
        o = self.options
        # Vertices (relative to the translation, as joints_3d) are points in metres like the joints.
        self.points = {"bbox": OneEuroFilter(o.pixels), "joints_2d": OneEuroFilter(o.pixels),
                       "joints_3d": OneEuroFilter(o.metres), "translation": OneEuroFilter(o.translation),
                       "vertices": OneEuroFilter(o.metres)}
        self.rotations = RotationFilter(o.rotations)

    def apply(self, frame: Frame, person: Person, nominal_dt: float) -> Person:
        if not person.detected:
            self.last_index = -2  # a guess: pass it through, restart at the next detection
            return self._betas_only(person)
        dt = frame.time_s - self.last_time
        if frame.index != self.last_index + 1:
            self._fresh()
        if not (math.isfinite(dt) and dt > 0):  # timestamps that do not advance: the nominal rate
            dt = nominal_dt
        self.last_index, self.last_time = frame.index, frame.time_s
        height = max(float(person.bbox[3] - person.bbox[1]), 1.0)
        scale = height if self.points["bbox"].value is None else self.scale
        weight = self._weights(person)
        out: dict[str, Any] = {}
        for name in _POINT_FIELDS:
            value = getattr(person, name)
            filt = self.points[name]
            if value is None:
                filt.value = filt.speed = None  # absent now: start over when it comes back
                continue
            points = value.reshape(-1, 2) if name == "bbox" else value.reshape(-1, value.shape[-1])
            in_pixels = name in ("bbox", "joints_2d")
            w = weight if name.startswith("joints") else None
            smoothed = filt.step(points, dt, scale if in_pixels else 1.0, w)
            # vertices stay float16 (their storage type), everything else float32
            out[name] = smoothed.reshape(value.shape).astype(np.float16 if name == "vertices" else np.float32)
        box = out["bbox"]
        self.scale = max(float(box[3] - box[1]), 1.0)
        if person.smpl is not None:
            smpl = person.smpl
            rotvecs = np.concatenate([smpl.global_orient.reshape(1, 3), smpl.body_pose.reshape(-1, 3)])
            smoothed = self.rotations.step(rotvecs, dt).astype(np.float32)
            out["smpl"] = SmplParams(smoothed[0], smoothed[1:], self._betas(smpl.betas))
        else:
            self.rotations = RotationFilter(self.options.rotations)
        return replace(person, **out)

    def _weights(self, person: Person) -> np.ndarray | None:
        threshold = self.options.min_confidence
        if person.joints_confidence is None or threshold <= 0:
            return None
        return np.clip(person.joints_confidence.astype(np.float64) / threshold, 0.0, 1.0)

    def _betas(self, betas: np.ndarray) -> np.ndarray:
        if len(self.betas) < self.options.betas_frames:
            self.betas.append(np.asarray(betas, dtype=np.float32).copy())
        return np.median(np.stack(self.betas), axis=0).astype(np.float32)

    def _betas_only(self, person: Person) -> Person:
        # A coasting row keeps its values, but the shape is the track's, not the frame's.
        if person.smpl is None or not self.betas:
            return person
        return replace(person, smpl=replace(person.smpl, betas=np.median(np.stack(self.betas), axis=0)
                                            .astype(np.float32)))

    # state
    def export(self, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        header = {"last_index": self.last_index, "last_time": self.last_time, "scale": self.scale}
        arrays: dict[str, np.ndarray] = {}
        for name, filt in self.points.items():
            arrays.update(filt.arrays(f"{prefix}.{name}"))
        arrays.update(self.rotations.arrays(f"{prefix}.rotations"))
        if self.betas:
            arrays[f"{prefix}.betas"] = np.stack(self.betas)
        return header, arrays

    def load(self, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray], prefix: str) -> None:
        self.last_index, self.last_time, self.scale = int(header["last_index"]), float(header["last_time"]), \
            float(header["scale"])
        for name, filt in self.points.items():
            filt.load(arrays, f"{prefix}.{name}")
        self.rotations.load(arrays, f"{prefix}.rotations")
        if f"{prefix}.betas" in arrays:
            self.betas = list(arrays[f"{prefix}.betas"])


class Smoother:
    """Smooths the frames of one result, in order: ``apply(frame)`` per frame (or
    ``apply_chunk``), ``export_state()`` and ``Smoother.restore(state)`` to go on elsewhere.

    ``fps``: the processed frame rate, used when two frames' timestamps do not advance (the
    filter otherwise takes each step's real interval from ``Frame.time_s``). With options
    whose preset is ``off`` every frame comes back unchanged.
    """

    def __init__(self, options: SmoothingOptions, fps: float) -> None:
        if not (math.isfinite(fps) and fps > 0):
            raise InternalError(f"smoothing needs a positive frame rate, got {fps!r}")
        self.options = options
        self.fps = float(fps)
        self._tracks: dict[int, _Track] = {}
        self._live: set[int] = set()  # tracks of the last frame
        self._next_index: int | None = None

    def apply(self, frame: Frame) -> Frame:
        if self._next_index is not None and frame.index != self._next_index:
            raise InternalError(f"smoothing got frame {frame.index}, expected {self._next_index}")
        self._next_index = frame.index + 1
        if not self.options.enabled:
            return frame
        people, here = [], set()
        for person in frame.people:
            track = self._tracks.get(person.track_id)
            if track is None:
                track = self._tracks[person.track_id] = _Track(self.options)
            # The engine's values stay with a person the filter changed (the NPZ's raw.* arrays).
            smoothed = track.apply(frame, person, 1.0 / self.fps)
            people.append(smoothed if smoothed is person else replace(smoothed, raw=person))
            here.add(person.track_id)
        # A track missing from this frame restarts when it returns: drop its filters now, so
        # that the state holds only the tracks of the last frame (and the betas samples).
        for track_id in self._live - here:
            track = self._tracks[track_id]
            if track.betas:
                track.forget_motion()
            else:
                del self._tracks[track_id]
        self._live = here
        return replace(frame, people=tuple(people))

    def apply_chunk(self, frames: Iterable[Frame]) -> list[Frame]:
        return [self.apply(frame) for frame in frames]

    def export_state(self) -> bytes:
        tracks, arrays = [], {}
        for track_id, track in sorted(self._tracks.items()):
            header, track_arrays = track.export(f"t{track_id}")
            tracks.append({"track_id": track_id, **header})
            arrays.update(track_arrays)
        header = {"options": self.options.to_dict(), "fps": self.fps, "next_index": self._next_index,
                  "live": sorted(self._live), "tracks": tracks}
        return pack_state(_MAGIC, header, arrays)

    @classmethod
    def restore(cls, state: bytes) -> Smoother:
        header, arrays = unpack_state(_MAGIC, state, "smoothing")
        try:
            # The parameters that ran, not the preset's current ones: a preset retuned between
            # two chunks of a job must not change the job's result.
            options = exact_options(header["options"])
            smoother = cls(options, float(header["fps"]))
            smoother._next_index = header["next_index"]
            smoother._live = {int(t) for t in header["live"]}
            for entry in header["tracks"]:
                track = _Track(options)
                track.load(entry, arrays, f"t{entry['track_id']}")
                smoother._tracks[int(entry["track_id"])] = track
        except (KeyError, TypeError, ValueError) as exc:
            raise InternalError(f"the smoothing state is damaged: {exc}") from None
        return smoother


def smooth_frames(frames: Iterable[Frame], options: SmoothingOptions, fps: float) -> Iterator[Frame]:
    """The frames of a whole result, smoothed (the one-run form of ``Smoother``)."""
    smoother = Smoother(options, fps)
    for frame in frames:
        yield smoother.apply(frame)


# --- measures (tests, bench/smoothing.py) ----------------------------------------------------


def jitter(frames: Iterable[Frame], name: str = "joints_2d", min_confidence: float | None = 0.5) -> float:
    """Mean frame-to-frame acceleration of a joint field, ``|x[t+1] − 2 x[t] + x[t−1]|`` per
    joint (pixels or metres per frame²), over runs of consecutive detections of each track;
    joints under ``min_confidence`` at ``t`` are left out (None: every joint)."""
    values = []
    for run in _detected_runs(frames, name):
        x = np.stack([getattr(p, name) for p in run]).astype(np.float64)
        accel = np.linalg.norm(x[2:] - 2 * x[1:-1] + x[:-2], axis=-1)
        if min_confidence is not None and run[0].joints_confidence is not None:
            confidence = np.stack([np.asarray(p.joints_confidence) for p in run])
            accel = accel[confidence[1:-1] >= min_confidence]
        values.append(accel.reshape(-1))
    joined = np.concatenate(values) if values else np.zeros(0)
    return float(joined.mean()) if joined.size else float("nan")


def _detected_runs(frames: Iterable[Frame], name: str) -> Iterator[list[Person]]:
    runs: dict[int, tuple[int, list[Person]]] = {}
    for frame in frames:
        for person in frame.people:
            last, run = runs.get(person.track_id, (-2, []))
            if not person.detected or getattr(person, name) is None:
                continue
            if frame.index != last + 1:
                if len(run) >= 3:
                    yield run
                run = []
            run.append(person)
            runs[person.track_id] = (frame.index, run)
    for _, run in runs.values():
        if len(run) >= 3:
            yield run


def step_response(params: OneEuroParams, fps: float, size: float = 1.0, frames: int = 300) -> np.ndarray:
    """The filter's output for a step of ``size`` at frame 0 (from 0, settled)."""
    filt, dt = OneEuroFilter(params), 1.0 / fps
    filt.step(np.zeros((1, 1)), dt)
    return np.array([filt.step(np.full((1, 1), size), dt)[0, 0] for _ in range(frames)])


def frames_to_reach(response: np.ndarray, fraction: float, size: float = 1.0) -> int:
    """Frames after a step until the output first reaches ``fraction`` of it (1: the step's frame)."""
    reached = np.flatnonzero(response >= fraction * size)
    return int(reached[0]) + 1 if reached.size else len(response) + 1


def ramp_lag(params: OneEuroParams, fps: float, speed: float, frames: int = 300) -> float:
    """Steady lag, in frames, behind a ramp of ``speed`` units per second."""
    filt, dt = OneEuroFilter(params), 1.0 / fps
    for i in range(frames):
        out = filt.step(np.full((1, 1), speed * i * dt), dt)[0, 0]
    return float((speed * (frames - 1) * dt - out) / (speed * dt))
