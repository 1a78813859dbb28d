"""Synthetic scenes with known ground truth: person-like figures walking over a static,
textured background.

Used by the tests (the motion engine is measured against the ground truth), by the
benchmarks (minutes of video at any size) and by the demo command. Everything is
deterministic given the scene: the same ``Scene`` renders the same pixels on any machine.

A figure is an upright shape (head, torso, two legs that swing while walking) of distinct
colours whose bounding box is exactly its ``width x height`` pixel box: the ground truth is
that box, clipped to the frame. Figures move along piecewise-linear paths given in
fractions of the frame, so one scene renders at any size; they are absent before the first
and after the last waypoint, and a path may leave the frame and come back. Nearer figures
(feet lower in the frame) are drawn over farther ones, as a camera would see them.

``Renderer`` precomputes what does not change (background, sprites) and renders a frame
in about the time it takes to copy it; the module-level ``render`` and ``ground_truth``
are conveniences for a single frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from pathlib import Path

import av
import numpy as np

RGB = tuple[int, int, int]
#: A waypoint: (time in seconds, x of the figure's centre as a fraction of the frame width,
#: y of its feet as a fraction of the frame height).
Waypoint = tuple[float, float, float]

# Per-frame sensor noise is drawn once for this many frames and reused cyclically: drawing
# fresh Gaussian noise for every 1280x720 frame would cost more than everything else.
_NOISE_FRAMES = 8
_WALK_PHASES = 8  # leg positions of the walking cycle
_STEPS_PER_S = 2.0  # walking cycles per second
_SKIN: RGB = (226, 184, 150)


@dataclass(frozen=True)
class Figure:
    figure_id: int
    path: tuple[Waypoint, ...]
    #: Height as a fraction of the frame height; width is ``aspect`` times the height.
    height: float = 0.4
    aspect: float = 0.38
    torso: RGB = (200, 40, 40)
    legs: RGB = (40, 40, 90)


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    fps: float
    duration_s: float
    figures: tuple[Figure, ...]
    seed: int = 0
    #: Standard deviation of the per-pixel sensor noise, in 8-bit levels.
    noise: float = 3.0

    @property
    def frame_count(self) -> int:
        return int(round(self.duration_s * self.fps))


@dataclass(frozen=True, eq=False)
class GroundTruth:
    figure_id: int
    box: np.ndarray  # (4,) float32 x1, y1, x2, y2 in frame pixels, clipped to the frame
    #: Fraction of the figure's box inside the frame (1.0 unless it is entering or leaving;
    #: being hidden behind another figure does not count).
    visible_fraction: float


class Renderer:
    """Renders the frames of one scene; holds the precomputed background and sprites."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self._paths = [_path_arrays(figure.path) for figure in scene.figures]
        self._sizes = [_figure_size(figure, scene.height) for figure in scene.figures]
        self._sprites = [
            [_sprite(figure, w, h, phase) for phase in range(_WALK_PHASES)]
            for figure, (w, h) in zip(scene.figures, self._sizes)
        ]

    @cached_property
    def _noisy_backgrounds(self) -> np.ndarray:
        """(_NOISE_FRAMES, H, W, 3) uint8; made on first use (ground truth needs none)."""
        rng = np.random.default_rng(self.scene.seed)
        background = _background(self.scene.width, self.scene.height, rng)
        return _with_noise(background, self.scene.noise, _NOISE_FRAMES, rng)

    def render(self, frame_index: int) -> np.ndarray:
        """Frame ``frame_index`` as an (H, W, 3) uint8 RGB array."""
        image = self._noisy_backgrounds[frame_index % _NOISE_FRAMES].copy()
        phase = int(frame_index / self.scene.fps * _STEPS_PER_S * _WALK_PHASES) % _WALK_PHASES
        for k, (x, y) in self._placements(frame_index):
            colours, mask = self._sprites[k][phase]
            _paste(image, colours, mask, x, y)
        return image

    def ground_truth(self, frame_index: int) -> list[GroundTruth]:
        """The figures at least partly inside frame ``frame_index``, by figure id."""
        result = []
        for k, (x, y) in self._placements(frame_index):
            w, h = self._sizes[k]
            clipped = np.clip([x, y, x + w, y + h], 0, [self.scene.width, self.scene.height,
                                                        self.scene.width, self.scene.height])
            visible = (clipped[2] - clipped[0]) * (clipped[3] - clipped[1])
            if visible > 0:
                result.append(GroundTruth(self.scene.figures[k].figure_id,
                                          clipped.astype(np.float32), visible / (w * h)))
        return sorted(result, key=lambda g: g.figure_id)

    def _placements(self, frame_index: int) -> list[tuple[int, tuple[int, int]]]:
        """(figure position in ``scene.figures``, top-left pixel) of the figures that exist
        at this frame, farthest first (feet highest in the frame)."""
        t = frame_index / self.scene.fps
        placed = []
        for k, (times, xs, ys) in enumerate(self._paths):
            if not times[0] <= t <= times[-1]:
                continue
            w, h = self._sizes[k]
            cx = np.interp(t, times, xs) * self.scene.width
            feet = np.interp(t, times, ys) * self.scene.height
            placed.append((feet, k, (int(round(cx - w / 2)), int(round(feet - h)))))
        placed.sort(key=lambda item: (item[0], item[1]))
        return [(k, top_left) for _, k, top_left in placed]


def render(scene: Scene, frame_index: int) -> np.ndarray:
    """One frame of ``scene``. Builds a ``Renderer``: use one directly for many frames."""
    return Renderer(scene).render(frame_index)


def ground_truth(scene: Scene, frame_index: int) -> list[GroundTruth]:
    """The visible figures of one frame (see ``Renderer.ground_truth``)."""
    return Renderer(scene).ground_truth(frame_index)


def write_video(path: str | os.PathLike, scene: Scene, codec: str = "libx264", *, crf: int = 18,
                preset: str = "veryfast", pix_fmt: str = "yuv420p",
                options: dict[str, str] | None = None) -> Path:
    """Encode the whole scene to ``path`` with PyAV; returns the path.

    ``crf`` and ``preset`` apply to libx264/libx265; ``options`` are passed to the encoder
    as they are (and win over those two).
    """
    renderer = Renderer(scene)
    encoder_options = {"crf": str(crf), "preset": preset} if codec in ("libx264", "libx265") else {}
    encoder_options.update(options or {})
    rate = Fraction(scene.fps).limit_denominator(1001)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, options=encoder_options)
        stream.width, stream.height, stream.pix_fmt = scene.width, scene.height, pix_fmt
        for index in range(scene.frame_count):
            frame = av.VideoFrame.from_ndarray(renderer.render(index), format="rgb24")
            frame.pts, frame.time_base = index, 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return Path(path)


def demo_scene(duration_s: float = 20.0, size: tuple[int, int] = (1280, 720), fps: float = 30.0,
               people: int = 3, seed: int = 0) -> Scene:
    """People walking to and fro across the frame in lanes at different depths.

    Each person crosses the whole frame at their own speed, waits off-screen for a while
    and comes back, so the scene keeps producing what a tracker finds hard: paths crossing
    (the lanes overlap in the image), people leaving, and re-entering after an absence.
    It lasts as long as asked; paths are drawn from ``seed``.
    """
    width, height = size
    rng = np.random.default_rng(seed)
    palette = _palette(people)
    figures = []
    for i in range(people):
        depth = i / max(people - 1, 1)  # 0: farthest lane, 1: nearest
        figure_height = 0.34 + 0.14 * depth
        feet = 0.70 + 0.25 * depth
        half_width = 0.38 * figure_height * height / width / 2
        path = _walk_to_and_fro(rng, duration_s, feet, off_left=-half_width - 0.01,
                                off_right=1 + half_width + 0.01, start_s=0.8 * i, from_left=i % 2 == 0)
        torso, legs = palette[i]
        figures.append(Figure(i + 1, path, height=figure_height, torso=torso, legs=legs))
    return Scene(width, height, fps, duration_s, tuple(figures), seed=seed)


# --- scene construction ----------------------------------------------------------------------


def _walk_to_and_fro(rng: np.random.Generator, duration_s: float, feet: float, off_left: float,
                     off_right: float, start_s: float, from_left: bool) -> tuple[Waypoint, ...]:
    """Waypoints of a person crossing from one side to the other and back, with pauses
    off-screen, covering ``duration_s``. Speeds are in frame widths per second."""
    sides = (off_left, off_right) if from_left else (off_right, off_left)
    t = start_s
    path: list[Waypoint] = [(0.0, sides[0], feet)] if start_s > 0 else []
    leg = 0
    while t <= duration_s:
        origin, target = sides[leg % 2], sides[(leg + 1) % 2]
        speed = rng.uniform(0.12, 0.25)
        path.append((t, origin, feet))
        t += abs(target - origin) / speed
        path.append((t, target, feet))
        t += rng.uniform(0.5, 3.0)  # off-screen pause
        leg += 1
    return tuple((round(time, 6), x, y) for time, x, y in path)


def _palette(n: int) -> list[tuple[RGB, RGB]]:
    """(torso, legs) colours, saturated so that they stand out from the greyish background."""
    base = [((205, 40, 40), (40, 40, 95)), ((40, 90, 215), (30, 30, 30)),
            ((40, 170, 60), (95, 55, 25)), ((235, 200, 40), (50, 50, 120)),
            ((170, 50, 190), (25, 70, 45)), ((240, 120, 30), (20, 20, 60))]
    return [base[i % len(base)] for i in range(n)]


def _path_arrays(path: tuple[Waypoint, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    times, xs, ys = (np.asarray(values, dtype=np.float64) for values in zip(*path))
    if np.any(np.diff(times) < 0):
        raise ValueError("waypoint times must not decrease")
    return times, xs, ys


def _figure_size(figure: Figure, frame_height: int) -> tuple[int, int]:
    h = max(8, int(round(figure.height * frame_height)))
    return max(4, int(round(figure.aspect * h))), h


# --- pixels ----------------------------------------------------------------------------------


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A static, greyish, textured picture: smooth blotches, floor tiles and fine grain."""
    blotches = _upsample(rng.uniform(-1, 1, size=(6, 10, 3)), height, width)
    base = 125 + 30 * blotches.mean(axis=2, keepdims=True) + 10 * blotches
    rows = np.arange(height)[:, None]
    cols = np.arange(width)[None, :]
    tile = max(4, height // 12)
    floor = (rows > height * 0.55) & (((rows // tile) + (cols // tile)) % 2 == 0)
    base = base + np.where(floor, 12.0, 0.0)[:, :, None]
    grain = rng.normal(0.0, 5.0, size=(height, width, 1))
    return np.clip(base + grain, 0, 255).astype(np.float32)


def _upsample(coarse: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a small (h, w, C) array to (height, width, C)."""
    def weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
        position = np.linspace(0, n_in - 1, n_out)
        low = np.minimum(position.astype(int), n_in - 2)
        return low, position - low

    y0, fy = weights(coarse.shape[0], height)
    x0, fx = weights(coarse.shape[1], width)
    rows = coarse[y0] * (1 - fy)[:, None, None] + coarse[y0 + 1] * fy[:, None, None]
    return rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x0 + 1] * fx[None, :, None]


def _with_noise(background: np.ndarray, sigma: float, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` copies of the background, each with its own Gaussian noise, as uint8."""
    frames = np.empty((count, *background.shape[:2], 3), dtype=np.uint8)
    for k in range(count):
        noise = rng.normal(0.0, sigma, size=background.shape[:2] + (3,)) if sigma > 0 else 0.0
        frames[k] = np.clip(np.rint(background + noise), 0, 255).astype(np.uint8)
    return frames


def _sprite(figure: Figure, width: int, height: int, phase: int) -> tuple[np.ndarray, np.ndarray]:
    """(colours (h, w, 3) uint8, mask (h, w) bool) of a figure at one walking phase.

    The shape touches all four sides of its box (head: top, torso: left and right, legs:
    bottom) in every phase, so the box is exactly the ground truth.
    """
    y = (np.arange(height) + 0.5)[:, None] / height  # pixel centres, as fractions of the box
    x = (np.arange(width) + 0.5)[None, :] / width
    head_radius = 0.1
    head = ((x - 0.5) * width) ** 2 + ((y - head_radius) * height) ** 2 <= (head_radius * height) ** 2
    torso = ((x - 0.5) / 0.5) ** 2 + ((y - 0.40) / 0.22) ** 2 <= 1.0
    swing = 0.10 * np.sin(2 * np.pi * phase / _WALK_PHASES)
    legs = np.zeros_like(torso)
    for centre in (0.5 - 0.16 + swing, 0.5 + 0.16 - swing):
        legs |= (np.abs(x - centre) <= 0.14) & (y >= 0.55)
    shading = (1.15 - 0.3 * y)[:, :, None]  # lit from above: gives the torso some texture
    colours = np.where(legs[:, :, None], np.array(figure.legs, np.float32),
                       np.array(figure.torso, np.float32) * shading)
    colours = np.where(head[:, :, None], np.array(_SKIN, np.float32), colours)
    mask = head | torso | legs
    return np.clip(colours, 0, 255).astype(np.uint8), mask


def _paste(image: np.ndarray, colours: np.ndarray, mask: np.ndarray, x: int, y: int) -> None:
    """Draw a sprite with its top-left corner at (x, y), clipped to the image."""
    h, w = mask.shape
    top, left = max(y, 0), max(x, 0)
    bottom, right = min(y + h, image.shape[0]), min(x + w, image.shape[1])
    if top >= bottom or left >= right:
        return
    sprite_rows = slice(top - y, bottom - y)
    sprite_cols = slice(left - x, right - x)
    region = image[top:bottom, left:right]
    np.copyto(region, colours[sprite_rows, sprite_cols], where=mask[sprite_rows, sprite_cols, None])
