"""What ``smooth=`` selects: One Euro parameters per group of quantities, and the presets.

Pure Python, no numpy: the job options (``pose_pipeline.options``) and the client read it;
the filters themselves are in ``smoothing``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import InvalidOption

__all__ = ["OneEuroParams", "SmoothingOptions", "PRESETS"]

_MAX_CUTOFF_HZ = 1000.0
_MAX_BETAS_FRAMES = 10_000


@dataclass(frozen=True)
class OneEuroParams:
    """One Euro filter parameters of one kind of quantity.

    ``min_cutoff`` (Hz): the cutoff frequency when the point stands still; lower removes more
    jitter and lags more on slow motion. ``beta`` (Hz per unit of speed): how much the cutoff
    rises with speed; higher lags less on fast motion and lets more jitter through while it
    moves. The unit of speed is the quantity's per second: box heights per second for pixels,
    m/s for metres, rad/s for rotations. ``d_cutoff`` (Hz): the cutoff of the speed estimate
    itself (1 Hz, as the paper recommends).
    """

    min_cutoff: float
    beta: float
    d_cutoff: float = 1.0

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


_GROUPS = ("pixels", "metres", "translation", "rotations")


@dataclass(frozen=True)
class SmoothingOptions:
    """What ``smooth=`` selects: a preset and, optionally, parameters overriding it.

    Groups: ``pixels`` (``bbox``, ``joints_2d``), ``metres`` (``joints_3d``), ``translation``
    (phalp's camera translation, whose depth is much noisier than the rest), ``rotations``
    (SMPL's). ``min_confidence``: joints under it have their beta scaled by
    ``c / min_confidence`` (0: every joint alike). ``betas_frames``: detections the betas median is taken over
    before it is frozen. Build with ``SmoothingOptions.parse`` to validate client values.
    """

    preset: str = "off"
    pixels: OneEuroParams = field(default_factory=lambda: OneEuroParams(1.0, 0.0))
    metres: OneEuroParams = field(default_factory=lambda: OneEuroParams(1.0, 0.0))
    translation: OneEuroParams = field(default_factory=lambda: OneEuroParams(1.0, 0.0))
    rotations: OneEuroParams = field(default_factory=lambda: OneEuroParams(1.0, 0.0))
    min_confidence: float = 0.5
    betas_frames: int = 30

    @property
    def enabled(self) -> bool:
        return self.preset != "off"

    def to_dict(self) -> dict[str, Any]:
        """The full parameters, as a result's header can record them (``parse`` reads it back)."""
        return {"preset": self.preset, **{g: getattr(self, g).to_dict() for g in _GROUPS},
                "min_confidence": self.min_confidence, "betas_frames": self.betas_frames}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> SmoothingOptions:
        """The options a result's ``processing.smoothing`` records (None: off), exactly as
        they ran, whatever the presets are now."""
        return PRESETS["off"] if d is None else exact_options(d)

    @classmethod
    def parse(cls, value: str | Mapping[str, Any] | SmoothingOptions | None) -> SmoothingOptions:
        """Client values: ``None`` (off), a preset name, or a mapping ``{"preset": name,
        "pixels": {"beta": 2.0}, "min_confidence": 0.3, ...}`` whose entries override the
        preset's (``preset`` defaults to ``medium`` when parameters are given). Raises
        ``InvalidOption`` naming the field (``smooth``, ``smooth.pixels.beta``, ...)."""
        if value is None:
            return PRESETS["off"]
        if isinstance(value, SmoothingOptions):
            return value
        if isinstance(value, str):
            return _preset(value.strip(), "smooth")
        if not isinstance(value, Mapping):
            raise InvalidOption(f"smooth: expected a preset name or an object, got {type(value).__name__}",
                                option="smooth")
        unknown = sorted(set(map(str, value)) - {"preset", "min_confidence", "betas_frames", *_GROUPS})
        if unknown:
            raise InvalidOption(f"unknown field(s) {', '.join(f'smooth.{u}' for u in unknown)}",
                                option=f"smooth.{unknown[0]}")
        preset = value.get("preset", "medium")
        if not isinstance(preset, str):
            raise InvalidOption("smooth.preset: expected a preset name", option="smooth.preset")
        base = _preset(preset.strip(), "smooth.preset")
        changes: dict[str, Any] = {}
        for group in _GROUPS:
            if group in value:
                changes[group] = _group(getattr(base, group), value[group], f"smooth.{group}")
        if "min_confidence" in value:
            changes["min_confidence"] = _number(value["min_confidence"], "smooth.min_confidence", 0.0, 1.0)
        if "betas_frames" in value:
            changes["betas_frames"] = _count(value["betas_frames"], "smooth.betas_frames", 1, _MAX_BETAS_FRAMES)
        if changes and base.preset == "off":
            raise InvalidOption("smooth: parameters given with preset 'off'", option="smooth.preset")
        return replace(base, **changes)


def _preset(name: str, option: str) -> SmoothingOptions:
    if name not in PRESETS:
        raise InvalidOption(f"{option}: unknown preset {name!r} (one of {', '.join(PRESETS)})", option=option)
    return PRESETS[name]


def _group(base: OneEuroParams, value: Any, option: str) -> OneEuroParams:
    if not isinstance(value, Mapping):
        raise InvalidOption(f"{option}: expected an object with min_cutoff, beta, d_cutoff", option=option)
    unknown = sorted(set(map(str, value)) - {"min_cutoff", "beta", "d_cutoff"})
    if unknown:
        raise InvalidOption(f"unknown field(s) {', '.join(f'{option}.{u}' for u in unknown)} (known: min_cutoff, "
                            "beta, d_cutoff)", option=f"{option}.{unknown[0]}")
    # Cutoffs must be positive: at 0 Hz the filter would never move.
    return OneEuroParams(
        min_cutoff=_number(value.get("min_cutoff", base.min_cutoff), f"{option}.min_cutoff", 0.0, _MAX_CUTOFF_HZ,
                           open_low=True),
        beta=_number(value.get("beta", base.beta), f"{option}.beta", 0.0, 1e6),
        d_cutoff=_number(value.get("d_cutoff", base.d_cutoff), f"{option}.d_cutoff", 0.0, _MAX_CUTOFF_HZ,
                         open_low=True),
    )


def _number(value: Any, option: str, low: float, high: float, open_low: bool = False) -> float:
    # Query strings arrive as text; bools are ints to Python but never a sensible number here.
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidOption(f"{option}: expected a number, got {value!r}", option=option)
    try:
        number = float(value)
    except ValueError:
        raise InvalidOption(f"{option}: expected a number, got {value!r}", option=option) from None
    if not math.isfinite(number) or number > high or number < low or (open_low and number == low):
        bound = f"> {low:g}" if open_low else f">= {low:g}"
        raise InvalidOption(f"{option}: {value!r} is out of range (must be {bound} and <= {high:g})", option=option)
    return number


def _count(value: Any, option: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidOption(f"{option}: expected an integer, got {value!r}", option=option)
    try:
        number = int(value)
    except ValueError:
        raise InvalidOption(f"{option}: expected an integer, got {value!r}", option=option) from None
    if not low <= number <= high:
        raise InvalidOption(f"{option}: {value!r} is out of range ({low}-{high})", option=option)
    return number


def _presets() -> dict[str, SmoothingOptions]:
    # Pixels and metres tuned on carphone and bikes with blazepose (bench/smoothing.py):
    # light lags about a frame on a ramp, strong a few frames. Metres: beta / 1.7 of the
    # pixels' (a box height is a person, ~1.7 m). Rotations and translation are not tuned
    # on real SMPL output (phalp needs a GPU): the same cutoffs; the rotations' beta chosen
    # on synthetic limb swings (up to ~4 rad/s) with 2-6 degrees of noise; the translation's
    # small, since the camera depth's noise would read as speed and open the filter.
    def preset(name: str, px: tuple, m: tuple, tr: tuple, rot: tuple) -> SmoothingOptions:
        return SmoothingOptions(name, OneEuroParams(*px), OneEuroParams(*m), OneEuroParams(*tr), OneEuroParams(*rot))

    return {
        "off": SmoothingOptions("off"),
        "light": preset("light", (4.0, 1.0), (4.0, 0.6), (2.0, 0.1), (4.0, 1.0)),
        "medium": preset("medium", (1.5, 1.0), (1.5, 0.6), (1.0, 0.1), (1.5, 1.0)),
        "strong": preset("strong", (0.5, 0.3), (0.5, 0.2), (0.3, 0.05), (0.5, 0.6)),
    }


#: The named presets; ``off`` is the default and leaves a result as the engine made it.
PRESETS: Mapping[str, SmoothingOptions] = _presets()



def exact_options(d: Mapping[str, Any]) -> SmoothingOptions:
    """The options ``SmoothingOptions.to_dict()`` wrote, exactly (no preset looked up)."""
    groups = {g: OneEuroParams(**d[g]) for g in _GROUPS}
    return SmoothingOptions(preset=str(d["preset"]), min_confidence=float(d["min_confidence"]),
                            betas_frames=int(d["betas_frames"]), **groups)
