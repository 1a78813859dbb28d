"""The production engine: upstream PHALP + HMR2.0 (4D-Humans), driven chunk by chunk.

Importing this package needs neither upstream package nor torch: ``PhalpEngine(**options)``
imports them and raises ``EngineUnavailable`` naming what is missing. See docs/phalp-engine.md.
"""

from typing import Any

from .options import PhalpOptions
from .weights import WeightPaths

__all__ = ["PhalpEngine", "PhalpOptions", "PhalpSession", "WeightPaths"]


def __getattr__(name: str) -> Any:
    # The engine module imports torch: load it only when the engine is asked for, so that
    # the CLI and the CPU-only replicas start without it.
    if name in ("PhalpEngine", "PhalpSession"):
        from . import engine
        return getattr(engine, name)
    raise AttributeError(name)
