"""Options of the blazepose engine (``engine.options``); docs/engines.md lists them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from ...errors import InvalidOption
from .models import ModelPaths


@dataclass(frozen=True)
class BlazePoseOptions:
    # --- model files
    #: Directory of the fetched model files (default ~/.cache/pose-pipeline/blazepose).
    models_dir: str | None = None
    #: Explicit model files (an operator's own): used as given, not checked by hash.
    detector_model: str | None = None
    landmark_model: str | None = None
    #: CPU threads of each model.
    threads: int = 2
    # --- finding people
    #: Person detector score threshold.
    detection_threshold: float = 0.5
    #: Landmark model's pose presence below which a region holds nobody.
    presence_threshold: float = 0.5
    #: Heatmap confidence (mean of the 8 sharpest joint peaks) below which a skeleton is
    #: taken for one the model made up (on cars, walls, bicycles) and dropped.
    confidence_threshold: float = 0.75
    #: While someone is followed, run the detector on every n-th frame only (for people who
    #: come in); while nobody is, on every frame.
    detect_every: int = 5
    #: 1: the detector sees the whole frame. n > 1: also an n x n grid of overlapping tiles,
    #: for small people (costs n * n + 1 detector runs per detection frame).
    tiles: int = 1
    #: Most skeletons per frame (regions followed first, then new detections by score).
    max_people: int = 10
    #: Two skeletons more alike than this (keypoint similarity, 0-1) are one person found twice.
    duplicate_similarity: float = 0.5
    # --- track ids
    n_init: int = 3
    max_age: int = 30
    max_predicted: int = 3
    min_similarity: float = 0.2
    #: Share of keypoint similarity (against box IoU) in the assignment.
    keypoint_weight: float = 0.5

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> BlazePoseOptions:
        known = {f.name for f in fields(cls)}
        unknown = set(options) - known
        if unknown:
            raise InvalidOption(f"unknown blazepose engine option(s): {', '.join(sorted(unknown))}; "
                                f"known: {', '.join(sorted(known))}", option="engine.options")
        return cls(**dict(options))

    def __post_init__(self) -> None:
        checks = [
            ("threads", self.threads >= 1, "must be at least 1"),
            ("detection_threshold", 0.0 < self.detection_threshold < 1.0, "must be in (0, 1)"),
            ("presence_threshold", 0.0 < self.presence_threshold < 1.0, "must be in (0, 1)"),
            ("confidence_threshold", 0.0 <= self.confidence_threshold < 1.0, "must be in [0, 1)"),
            ("detect_every", self.detect_every >= 1, "must be at least 1"),
            ("tiles", 1 <= self.tiles <= 4, "must be in [1, 4]"),
            ("max_people", self.max_people >= 1, "must be at least 1"),
            ("duplicate_similarity", 0.0 < self.duplicate_similarity <= 1.0, "must be in (0, 1]"),
            ("n_init", self.n_init >= 1, "must be at least 1"),
            ("max_age", self.max_age >= 0, "must be at least 0"),
            ("max_predicted", 0 <= self.max_predicted <= self.max_age, "must be in [0, max_age]"),
            ("min_similarity", 0.0 < self.min_similarity <= 1.0, "must be in (0, 1]"),
            ("keypoint_weight", 0.0 <= self.keypoint_weight <= 1.0, "must be in [0, 1]"),
        ]
        for name, ok, why in checks:
            if not ok:
                raise InvalidOption(f"blazepose engine option {name}: {why}", option=f"engine.options.{name}")

    def model_paths(self) -> ModelPaths:
        return ModelPaths.resolve(self.models_dir, self.detector_model, self.landmark_model)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
