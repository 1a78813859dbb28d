"""The motion engine's options (``engine.options``), checked when the engine is built."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import InvalidOption


@dataclass(frozen=True)
class MotionOptions:
    """The engine's options (``engine.options`` in the configuration). Frame counts are in
    processed frames: the defaults suit about 30 frames per second."""

    #: Longest side, in pixels, of the image the foreground is computed on; None: full size.
    work_side: int | None = 320
    #: Fraction by which the background moves towards each frame where no motion is seen.
    learning_rate: float = 0.03
    #: Colour difference (8-bit levels, largest over R, G, B) above which a pixel is foreground.
    threshold: float = 25.0
    #: Frames a pixel may stay foreground before it is taken into the background.
    absorb_frames: int = 150
    #: A blob whose outline has fewer edges of the frame than this fraction of the edges of
    #: the background model is a ghost (see ``ForegroundModel._is_ghost``) and is absorbed.
    ghost_edge_ratio: float = 0.1
    #: Foreground fraction of the frame above which the background restarts (cut, camera move).
    reset_fraction: float = 0.5
    #: Smallest blob that counts, as a fraction of the frame area.
    min_area: float = 0.002
    #: Height/width range of blobs that may start a track (upright people are about 1.5-4).
    aspect_range: tuple[float, float] = (0.8, 6.0)
    #: Consecutive hits that confirm a track; ``holdback_frames`` is ``n_init - 1``.
    n_init: int = 3
    #: Frames a confirmed track survives without a match before it is deleted.
    max_age: int = 30
    #: Frames a coasting track is still reported with its predicted box.
    max_predicted: int = 10
    #: Smallest IoU between a track's predicted box and a detection for them to match.
    min_iou: float = 0.2
    #: Fraction of a track's predicted box inside a detection that makes it part of a group.
    group_coverage: float = 0.6
    #: A detection covering one track's predicted box and this many times larger is taken
    #: for that person merged with someone untracked, and treated as a group.
    merge_area_ratio: float = 1.8

    def __post_init__(self) -> None:
        object.__setattr__(self, "aspect_range", tuple(float(v) for v in self.aspect_range))
        checks = [
            (self.work_side is None or self.work_side >= 16, "work_side must be at least 16 (or null)"),
            (0.0 < self.learning_rate <= 1.0, "learning_rate must be in (0, 1]"),
            (self.threshold > 0, "threshold must be positive"),
            (1 <= self.absorb_frames < 2 ** 16, "absorb_frames must be in [1, 65535]"),
            (0.0 <= self.ghost_edge_ratio < 1.0, "ghost_edge_ratio must be in [0, 1)"),
            (0.0 < self.reset_fraction <= 1.0, "reset_fraction must be in (0, 1]"),
            (0.0 <= self.min_area < 1.0, "min_area must be in [0, 1)"),
            (len(self.aspect_range) == 2 and 0 < self.aspect_range[0] <= self.aspect_range[1],
             "aspect_range must be [low, high] with 0 < low <= high"),
            (self.n_init >= 1, "n_init must be at least 1"),
            (self.max_age >= 0, "max_age must be at least 0"),
            (0 <= self.max_predicted <= self.max_age, "max_predicted must be in [0, max_age]"),
            (0.0 < self.min_iou <= 1.0, "min_iou must be in (0, 1]"),
            (0.0 < self.group_coverage <= 1.0, "group_coverage must be in (0, 1]"),
            (self.merge_area_ratio > 1.0, "merge_area_ratio must be above 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidOption(f"motion engine: {message}", option="engine.options")
