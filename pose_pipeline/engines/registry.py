"""Engines by name. Each entry is imported only when asked for, so that a missing optional
package (the upstream PHALP stack) breaks only the engine that needs it."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import EngineUnavailable, InvalidOption
from .base import Engine

#: name -> "module:factory"; a factory takes the engine options as keyword arguments.
BUILTIN_ENGINES: Mapping[str, str] = {
    "blazepose": "pose_pipeline.engines.blazepose:BlazePoseEngine",
    "motion": "pose_pipeline.engines.motion:MotionEngine",
    "phalp": "pose_pipeline.engines.phalp:PhalpEngine",
    # Test-only: another engine with faults injected (engines/faults.py).
    "faults": "pose_pipeline.engines.faults:faulty_engine",
}


#: Engines whose results carry SMPL (body parameters, a body model): what ``format=bvh`` and
#: ``include=vertices`` need. Known by name, so that the ingress can refuse a job for the other
#: engines at submission without loading one.
SMPL_ENGINES = frozenset({"phalp"})


def provides_smpl(name: str, options: Mapping[str, Any] | None = None) -> bool:
    """Whether engine ``name`` (with its ``options``) gives SMPL; ``faults`` is its inner engine's."""
    if name == "faults":
        inner = dict(options or {})
        return provides_smpl(str(inner.get("engine", "")), inner.get("options"))
    return name in SMPL_ENGINES


class EngineRegistry:
    def __init__(self, entries: Mapping[str, str | Callable[..., Engine]] = BUILTIN_ENGINES) -> None:
        self._entries = dict(entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def register(self, name: str, factory: str | Callable[..., Engine]) -> None:
        self._entries[name] = factory

    def create(self, name: str, options: Mapping[str, Any] | None = None) -> Engine:
        factory = self._entries.get(name)
        if factory is None:
            raise InvalidOption(f"unknown engine {name!r}; available: {', '.join(self.names())}",
                                option="engine")
        if isinstance(factory, str):
            factory = _import(factory, name)
        try:
            return factory(**dict(options or {}))
        except TypeError as exc:
            raise InvalidOption(f"bad options for engine {name!r}: {exc}", option="engine.options") from None


def _import(target: str, name: str) -> Callable[..., Engine]:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineUnavailable(
            f"engine {name!r} cannot be imported: {exc}. "
            "Install its optional dependencies (see docs/engines.md).",
            engine=name, missing=getattr(exc, "name", None),
        ) from None
    return getattr(module, attr)
