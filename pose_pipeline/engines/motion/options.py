"""The motion engine's options (``engine.options``), checked when the engine is built;
docs/configuration.md's table of them is generated from these fields."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from ..options import EngineOptions, at_most_max_age


class MotionOptions(EngineOptions):
    """Frame counts are processed frames: the defaults suit about 30 frames per second."""

    engine: ClassVar[str] = "motion"

    work_side: int | None = Field(320, ge=16, description=(
        "longest side, in pixels, of the image the foreground is computed on (null: full size)"))
    learning_rate: float = Field(0.03, gt=0, le=1, description=(
        "fraction by which the background moves towards each frame where no motion is seen"))
    threshold: float = Field(25.0, gt=0, description=(
        "colour difference (8-bit levels, largest over R, G, B) above which a pixel is foreground"))
    absorb_frames: int = Field(150, ge=1, le=65535, description=(
        "frames a pixel may stay foreground before it is taken into the background"))
    ghost_edge_ratio: float = Field(0.1, ge=0, lt=1, description=(
        "a blob whose outline has fewer edges of the frame than this fraction of the edges of the background "
        "model is a ghost of the background, and is absorbed"))
    reset_fraction: float = Field(0.5, gt=0, le=1, description=(
        "foreground fraction of the frame above which the background restarts (a cut, a camera move)"))
    min_area: float = Field(0.002, ge=0, lt=1, description="smallest blob that counts, as a fraction of the frame area")
    aspect_range: tuple[float, float] = Field((0.8, 6.0), description=(
        "height/width range `[low, high]` of blobs that may start a track (upright people are about 1.5-4)"))
    n_init: int = Field(3, ge=1, description="consecutive hits that confirm a track (hold-back `n_init − 1`)")
    max_age: int = Field(30, ge=0, description="frames a confirmed track survives unmatched before it is deleted")
    max_predicted: int = Field(10, ge=0, description=(
        "frames a coasting track is still reported with its predicted box (≤ `max_age`)"))
    min_iou: float = Field(0.2, gt=0, le=1, description=(
        "smallest IoU between a track's predicted box and a detection for them to match"))
    group_coverage: float = Field(0.6, gt=0, le=1, description=(
        "fraction of a track's predicted box inside a detection that makes it part of a group"))
    merge_area_ratio: float = Field(1.8, gt=1, description=(
        "a detection covering one track's predicted box and this many times larger is that person merged with "
        "someone untracked, treated as a group"))

    @field_validator("aspect_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError("must be [low, high] with 0 < low <= high")
        return value

    _max_predicted = field_validator("max_predicted")(at_most_max_age)
