"""Options of the phalp engine (``engine.options`` in the service configuration).

Tracker defaults are upstream's (phalp/configs/base.py); where upstream hard-codes a value
that matters to users (the detector's minimum person size, the score threshold) it is an
option here. docs/configuration.md's table of them is generated from these fields;
docs/phalp-engine.md says more of each.
"""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

from pydantic import Field, field_validator, model_validator

from ...errors import InvalidOption
from ..options import EngineOptions
from .weights import DETECTORS, WeightPaths

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


class PhalpOptions(EngineOptions):
    """Weight paths default to upstream's cache layout under ``weights_dir``, so an existing
    upstream cache works unchanged. The CUDA memory cap is the replica's
    (``tracking.cuda_memory_fraction``)."""

    engine: ClassVar[str] = "phalp"

    # --- weights: every path explicit
    weights_dir: str | None = Field(None, description="root of upstream's caches (`phalp/`, `4DHumans/`, `torch/`); "
                                                      "null: `$HOME/.cache`")
    smpl_model_path: str | None = Field(None, description=(
        "the SMPL neutral model (licence-restricted: yours); null: "
        "`<weights_dir>/phalp/3D/models/smpl/SMPL_NEUTRAL.pkl`"))
    hmr2_checkpoint: str | None = Field(None, description=(
        "HMR2.0's Lightning checkpoint (its `model_config.yaml` two folders up); null: upstream's path under "
        "`<weights_dir>/4DHumans`"))
    detector_weights: str | None = Field(None, description="the detector's `.pkl`; null: detectron2's cache layout "
                                                           "under `detector_cache`")
    detector_cache: str | None = Field(None, description="null: `$FVCORE_CACHE` or `~/.torch/iopath_cache`")
    # --- detection
    detector: str = Field("vitdet", description=(
        "`vitdet` (ViTDet-H, upstream's) or `maskrcnn` (RegNetY-4GF Mask R-CNN, lighter)"))
    detection_threshold: float = Field(0.8, ge=0, lt=1, description="person score threshold (upstream `low_th_c`)")
    min_box_width: float = Field(50.0, ge=0, description="people narrower than this are dropped (upstream `small_w`)")
    min_box_height: float = Field(100.0, ge=0, description="people shorter than this are dropped (upstream `small_h`)")
    detector_batch: int = Field(4, ge=1, description="frames per detector forward (halved on CUDA out of memory)")
    detector_precision: Precision | None = Field(None, description=(
        "the detector backbone's precision; null: as `precision`"))
    # --- HMR2.0
    max_batch: int = Field(32, ge=1, description=(
        "person crops per HMR2 forward, across the frames of a chunk (halved on CUDA out of memory)"))
    precision: Precision = Field("fp32", description=(
        "`bf16`/`fp16`: both backbones' weights stored and run in that type, the rest in fp32 "
        "(docs/phalp-engine.md, Precision)"))
    # --- tracker (upstream PHALP's names and defaults)
    n_init: int = Field(5, ge=1, description="hits that confirm a track (at most `track_history + 1`)")
    max_age: int = Field(50, ge=1, description="frames a track survives unmatched (upstream `max_age_track`)")
    predict: str = Field("TPL", description="what association predicts: letters of T (texture), P (pose), "
                                            "L (location), A (appearance)")
    pose_distance: str = Field("smpl", description="upstream's `pose_distance`")
    distance_type: str = Field("EQ_019", description="upstream's `distance_type`")
    hungarian_th: float = Field(100.0, description="upstream's assignment threshold")
    track_history: int = Field(7, ge=1, description="detections a track keeps")
    alpha: float = Field(0.1, description="upstream's `alpha`")
    past_lookback: int = Field(1, ge=1, description="upstream's `past_lookback`")
    include_undetected: bool = Field(True, description=(
        "report confirmed tracks in frames where they were not detected (`detected: false`, the values of the "
        "last detection, as upstream's output does)"))
    # --- device
    device: Literal["cuda", "cpu"] | None = Field(None, description=(
        "`cuda` (the device Ray assigned) or `cpu`; null: CUDA when available"))

    @field_validator("detector")
    @classmethod
    def _known_detector(cls, value: str) -> str:
        if value not in DETECTORS:
            raise ValueError(f"must be one of {', '.join(DETECTORS)}, got {value!r}")
        return value

    @field_validator("predict")
    @classmethod
    def _predict_letters(cls, value: str) -> str:
        if not value or not set(value) <= set("TPLA"):
            raise ValueError("letters from T (texture), P (pose), L (location), A (appearance)")
        return value

    @model_validator(mode="after")
    def _history_holds_the_backfill(self) -> PhalpOptions:
        # back-filled frames come from the track's history deque
        if self.n_init > self.track_history + 1:
            raise InvalidOption(f"phalp engine option n_init: must be at most track_history + 1 "
                                f"({self.track_history + 1})", option="engine.options.n_init")
        return self

    def weight_paths(self) -> WeightPaths:
        return WeightPaths.resolve(self.weights_dir, detector=self.detector, detector_cache=self.detector_cache,
                                   smpl_model=self.smpl_model_path, hmr2_checkpoint=self.hmr2_checkpoint,
                                   detector_weights=self.detector_weights)
