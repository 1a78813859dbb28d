"""Options of the blazepose engine (``engine.options``); docs/configuration.md's table of them
is generated from these fields, docs/engines.md says what each does."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from ..options import EngineOptions, at_most_max_age
from .models import ModelPaths


class BlazePoseOptions(EngineOptions):
    """Frame counts are processed frames (the defaults suit about 25-30 fps)."""

    engine: ClassVar[str] = "blazepose"

    # --- model files
    models_dir: str | None = Field(None, description=(
        "where `pose-pipeline models fetch` puts the two model files (null: "
        "`~/.cache/pose-pipeline/blazepose`, under `$XDG_CACHE_HOME`); `serve`, `demo` and `track` fetch them "
        "there when missing"))
    detector_model: str | None = Field(None, description=(
        "an operator's own detector file instead (used as given: checked by its tensors, not by sha256)"))
    landmark_model: str | None = Field(None, description="an operator's own landmark model file instead (likewise)")
    threads: int = Field(2, ge=1, description="CPU threads of each model (results do not depend on it)")
    # --- finding people
    detection_threshold: float = Field(0.5, gt=0, lt=1, description="person detector score")
    presence_threshold: float = Field(0.5, gt=0, lt=1, description=(
        "landmark model's pose presence below which a region holds nobody"))
    confidence_threshold: float = Field(0.75, ge=0, lt=1, description=(
        "heatmap confidence (mean of the 8 sharpest joint peaks) below which a skeleton is one the model made up "
        "(on cars, walls, bicycles) and is dropped"))
    detect_every: int = Field(5, ge=1, description=(
        "run the detector every n-th frame while someone is followed (every frame while nobody is)"))
    tiles: int = Field(1, ge=1, le=4, description=(
        "1: the detector sees the whole frame; n in 2-4: also an n x n grid of overlapping tiles, for small "
        "people (n² + 1 detector runs per detection frame at most)"))
    max_people: int = Field(10, ge=1, description="skeletons per frame at most (regions followed first, then new "
                                                  "detections by score)")
    duplicate_similarity: float = Field(0.5, gt=0, le=1, description=(
        "keypoint similarity above which two skeletons are one person found twice"))
    # --- track ids
    n_init: int = Field(3, ge=1, description="consecutive hits that confirm a track (hold-back `n_init − 1`)")
    max_age: int = Field(30, ge=0, description="frames a confirmed track survives unmatched")
    max_predicted: int = Field(3, ge=0, description=(
        "frames a coasting track is still reported, with its predicted box and no joints (≤ `max_age`)"))
    min_similarity: float = Field(0.2, gt=0, le=1, description=(
        "gate of the assignment (IoU and keypoint similarity combined)"))
    keypoint_weight: float = Field(0.5, ge=0, le=1, description=(
        "share of keypoint similarity against box IoU in the assignment"))

    _max_predicted = field_validator("max_predicted")(at_most_max_age)

    def model_paths(self) -> ModelPaths:
        return ModelPaths.resolve(self.models_dir, self.detector_model, self.landmark_model)
