"""Export and restore of a PHALP tracker between chunks and across processes.

Upstream's ``Tracker`` keeps ``phalp_tracker``, a reference to the whole model (HMR2,
the pose predictor, the detector), because association calls back into it. The tracks,
metric samples and counters are plain Python/numpy and pickle fine; the model must not
travel. ``dump_state`` detaches the model reference, pickles the rest (refusing any other
``torch.nn.Module`` it meets, and moving any CUDA tensor to the CPU), and re-attaches it;
``load_state`` unpickles and attaches the model of the process that restores it.

The bytes are for our own checkpoint store only (pickle executes code on load): never
load state that did not come from ``dump_state``.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import torch

MAGIC = b"pose-pipeline/phalp-state/1\n"
MODEL_ATTRIBUTE = "phalp_tracker"  # name of the model reference in upstream's Tracker


class StateError(ValueError):
    """The bytes are not a state this version can restore."""


class _StatePickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, torch.nn.Module):
            raise StateError(f"tracker state still references a model ({type(obj).__name__}); "
                             "it must be detached before export")
        if isinstance(obj, torch.Tensor) and obj.device.type != "cpu":
            return _cpu_tensor, (obj.detach().cpu(),)
        return NotImplemented


def _cpu_tensor(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def detach_model(tracker: Any) -> Any:
    """Remove and return the model reference of ``tracker``."""
    model = getattr(tracker, MODEL_ATTRIBUTE, None)
    setattr(tracker, MODEL_ATTRIBUTE, None)
    return model


def attach_model(tracker: Any, model: Any) -> None:
    setattr(tracker, MODEL_ATTRIBUTE, model)


def dump_state(tracker: Any, session: dict[str, Any]) -> bytes:
    """Bytes holding ``tracker`` (without its model) and the session's own fields."""
    model = detach_model(tracker)
    try:
        buffer = io.BytesIO()
        buffer.write(MAGIC)
        _StatePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump({"tracker": tracker, "session": session})
        return buffer.getvalue()
    finally:
        attach_model(tracker, model)


def load_state(data: bytes, model: Any) -> tuple[Any, dict[str, Any]]:
    """(tracker with ``model`` attached, session fields) from ``dump_state``'s bytes."""
    if not data.startswith(MAGIC):
        raise StateError("not a phalp engine state (wrong header); was it made by another engine?")
    try:
        payload = pickle.loads(data[len(MAGIC):])
    except Exception as exc:  # truncated or from an incompatible upstream version
        raise StateError(f"the phalp engine state cannot be read: {exc}") from None
    tracker = payload["tracker"]
    attach_model(tracker, model)
    return tracker, payload["session"]
