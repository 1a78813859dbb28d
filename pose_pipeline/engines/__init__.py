from .base import ChunkOutput, Engine, Session, VideoSpec
from .registry import BUILTIN_ENGINES, EngineRegistry

__all__ = ["BUILTIN_ENGINES", "ChunkOutput", "Engine", "EngineRegistry", "Session", "VideoSpec"]
