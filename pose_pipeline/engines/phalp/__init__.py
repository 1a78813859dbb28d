"""The production engine: upstream PHALP + HMR2.0 (4D-Humans), driven chunk by chunk.

Importing this package needs neither upstream package: ``PhalpEngine(**options)`` imports
them and raises ``EngineUnavailable`` naming what is missing. See docs/phalp-engine.md.
"""

from .engine import PhalpEngine, PhalpSession
from .options import PhalpOptions
from .weights import WeightPaths

__all__ = ["PhalpEngine", "PhalpOptions", "PhalpSession", "WeightPaths"]
