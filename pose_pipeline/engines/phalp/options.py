"""Options of the phalp engine (``engine.options`` in the service configuration).

Tracker defaults are upstream's (phalp/configs/base.py); where upstream hard-codes a value
that matters to users (the detector's minimum person size, the score threshold) it is an
option here. docs/phalp-engine.md lists them all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any
from collections.abc import Mapping

from ...errors import InvalidOption
from .weights import DETECTORS, WeightPaths

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class PhalpOptions:
    # --- weights: every path explicit (defaults: upstream's cache layout under weights_dir)
    weights_dir: str | None = None  # default $HOME/.cache (holds phalp/, 4DHumans/, torch/)
    smpl_model_path: str | None = None  # default <weights_dir>/phalp/3D/models/smpl/SMPL_NEUTRAL.pkl
    hmr2_checkpoint: str | None = None  # default <weights_dir>/4DHumans/logs/.../epoch=35-step=1000000.ckpt
    detector_weights: str | None = None  # default: detectron2's cache layout under detector_cache
    detector_cache: str | None = None  # default $FVCORE_CACHE or ~/.torch/iopath_cache
    # --- detection
    detector: str = "vitdet"  # "vitdet" (ViTDet-H, upstream) or "maskrcnn" (RegNetY-4GF, lighter)
    detection_threshold: float = 0.8  # person score threshold (upstream low_th_c)
    min_box_width: float = 50.0  # people smaller than this are dropped (upstream small_w)
    min_box_height: float = 100.0  # (upstream small_h)
    detector_batch: int = 4  # frames per detector forward (halved on CUDA OOM)
    detector_precision: str | None = None  # the detector backbone's; None: as ``precision``
    # --- HMR2.0
    max_batch: int = 32  # person crops per HMR2 forward, across the frames of a chunk
    precision: str = "fp32"  # the two backbones' weights and maths: fp32, bf16 or fp16 (precision.py)
    # --- tracker (upstream PHALP names and defaults)
    n_init: int = 5
    max_age: int = 50  # upstream max_age_track
    predict: str = "TPL"  # texture, pose, location
    pose_distance: str = "smpl"
    distance_type: str = "EQ_019"
    hungarian_th: float = 100.0
    track_history: int = 7
    alpha: float = 0.1
    past_lookback: int = 1
    #: Report confirmed tracks in frames where they were not detected (detected=False,
    #: values of the last detection, as upstream's output does).
    include_undetected: bool = True
    # --- device
    device: str | None = None  # "cuda" (Ray's device) or "cpu"; None: cuda when available
    # (the CUDA memory cap is the replica's: tracking.cuda_memory_fraction)

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> PhalpOptions:
        known = {f.name for f in fields(cls)}
        unknown = set(options) - known
        if unknown:
            raise InvalidOption(f"unknown phalp engine option(s): {', '.join(sorted(unknown))}; "
                                f"known: {', '.join(sorted(known))}", option="engine.options")
        return cls(**dict(options))

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise InvalidOption(f"engine option {name}: {why}", option=f"engine.options.{name}")

        if self.detector not in DETECTORS:
            bad("detector", f"must be one of {', '.join(DETECTORS)}, got {self.detector!r}")
        for name in ("precision", "detector_precision"):
            value = getattr(self, name)
            if value not in PRECISIONS and not (name == "detector_precision" and value is None):
                bad(name, f"must be one of {', '.join(PRECISIONS)}, got {value!r}")
        if not 0.0 <= self.detection_threshold < 1.0:
            bad("detection_threshold", "must be in [0, 1)")
        if self.min_box_width < 0 or self.min_box_height < 0:
            bad("min_box_width/min_box_height", "must be >= 0")
        for name in ("max_batch", "detector_batch", "n_init", "max_age", "track_history", "past_lookback"):
            if getattr(self, name) < 1:
                bad(name, "must be >= 1")
        if self.n_init > self.track_history + 1:
            # back-filled frames come from the track's history deque
            bad("n_init", f"must be at most track_history + 1 ({self.track_history + 1})")
        if not set(self.predict) <= set("TPLA") or not self.predict:
            bad("predict", "letters from T (texture), P (pose), L (location), A (appearance)")

    def weight_paths(self) -> WeightPaths:
        return WeightPaths.resolve(self.weights_dir, detector=self.detector, detector_cache=self.detector_cache,
                                   smpl_model=self.smpl_model_path, hmr2_checkpoint=self.hmr2_checkpoint,
                                   detector_weights=self.detector_weights)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
