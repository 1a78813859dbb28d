"""Reduced precision for the two ViT-H backbones, the engine's heavy networks.

``precision: bf16`` (or ``fp16``) stores the backbones of the detector (ViTDet-H or the
RegNetY) and of HMR2.0 in that type and runs them there; everything after them stays fp32:
the detector's proposal and box/mask heads, HMR2's SMPL head, SMPL itself, the texture
sampler, the appearance encoder and association. Storing (not autocasting) the weights
halves their memory (the two backbones: 5.1 GB in fp32, 2.5 GB), which is what lets the engine fit
an 8 GB card; autocast would keep the fp32 weights and add cast copies.
"""

from __future__ import annotations

from typing import Any

import torch

DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def to_float32(value: Any) -> Any:
    """Floating tensors (also inside dicts, lists and tuples) as fp32; the rest unchanged."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: to_float32(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_float32(v) for v in value)
    return value


class LowPrecision(torch.nn.Module):
    """``inner`` with its weights in ``dtype``: the input is cast to it, floating outputs
    come back as fp32, so the modules around it run unchanged. Attributes the wrapper lacks
    are read from ``inner`` (detectron2 reads its backbone's ``size_divisibility``)."""

    def __init__(self, inner: torch.nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.inner = inner.to(dtype)
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> Any:
        return to_float32(self.inner(x.to(self.dtype)))

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["inner"], name)


def lower_precision(owner: torch.nn.Module, attribute: str, precision: str) -> None:
    """Replace ``owner.<attribute>`` by its ``LowPrecision`` wrapper (fp32: unchanged)."""
    dtype = DTYPES[precision]
    if dtype is not None:
        setattr(owner, attribute, LowPrecision(getattr(owner, attribute), dtype))
