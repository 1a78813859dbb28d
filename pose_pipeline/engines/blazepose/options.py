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
        "where `pose-pipeline models fetch` puts the three model files (null: "
        "`~/.cache/pose-pipeline/blazepose`, under `$XDG_CACHE_HOME`); `serve`, `demo` and `track` fetch them "
        "there when missing"))
    detector_model: str | None = Field(None, description=(
        "an operator's own person detector file instead (used as given: checked by its tensors, not by sha256)"))
    face_detector_model: str | None = Field(None, description="an operator's own face-based detector file instead "
                                                              "(likewise)")
    landmark_model: str | None = Field(None, description="an operator's own landmark model file instead (likewise)")
    threads: int = Field(2, ge=1, description="CPU threads of each model (results do not depend on it)")
    # --- finding people
    detection_threshold: float = Field(0.4, gt=0, lt=1, description="person detector score")
    face_threshold: float = Field(0.5, gt=0, lt=1, description=(
        "score of BlazePose's face-based detector, which finds close-ups on the whole frame"))
    presence_threshold: float = Field(0.5, gt=0, lt=1, description=(
        "landmark model's pose presence below which a region holds nobody"))
    confidence_threshold: float = Field(0.6, ge=0, lt=1, description=(
        "heatmap confidence (mean of the 8 sharpest joint peaks) below which a skeleton is one the model made up "
        "(on cars, walls, bicycles) and is dropped"))
    detect_every: int = Field(3, ge=1, description=(
        "run the person detector every n-th frame for newcomers (every frame while nobody is followed)"))
    min_height: float = Field(40.0, ge=10, description=(
        "height in pixels of the smallest people to find: frames taller than 12.5 times it are also searched in "
        "tiles of side 10 times it, two per detection frame in turn (smaller: more tiles, newcomers found later)"))
    turned_views: bool = Field(True, description=(
        "also look for people upside down or lying (one turned view of the whole frame per detection frame, "
        "and tiles in a turn that found someone)"))
    max_people: int = Field(20, ge=1, description="skeletons per frame at most (people followed first, then new "
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
    appearance_weight: float = Field(0.3, ge=0, le=1, description=(
        "share of the colours of torso and legs in the assignment (among the pairs motion allows)"))
    recover_appearance: float = Field(0.8, gt=0, le=1, description=(
        "colour similarity at which someone near where a lost track was seen gets its id back"))

    _max_predicted = field_validator("max_predicted")(at_most_max_age)

    def model_paths(self) -> ModelPaths:
        return ModelPaths.resolve(self.models_dir, self.detector_model, self.face_detector_model, self.landmark_model)
