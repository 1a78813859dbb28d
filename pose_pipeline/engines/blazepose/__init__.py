"""BlazePose on the CPU (LiteRT): multi-person 33-joint skeletons; see ``engine``."""

from .engine import BlazePoseEngine
from .options import BlazePoseOptions

__all__ = ["BlazePoseEngine", "BlazePoseOptions"]
