"""``MotionEngine``: what the registry builds for ``engine.name: motion``."""

from __future__ import annotations

from typing import Any

from ...results.schema import EngineInfo
from ..base import Engine, VideoSpec
from .options import MotionOptions
from .session import ENGINE_VERSION, MotionSession


class MotionEngine(Engine):
    """Background subtraction + Kalman/Hungarian tracking on the CPU (see the module doc)."""

    def __init__(self, **options: Any) -> None:
        self.options = MotionOptions.from_mapping(options)
        self.holdback_frames = self.options.n_init - 1

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(
            name="motion",
            version=ENGINE_VERSION,
            description=("Background-subtraction motion tracker on the CPU, for development, tests "
                         "and benchmarks: boxes of moving foreground blobs with Kalman + Hungarian "
                         "track ids. Not a pose model: no SMPL, no 3D, no joints; it follows "
                         "anything that moves and loses people who stand still."),
            provides_3d=False,
            joint_format=None,
        )

    def open(self, video: VideoSpec) -> MotionSession:
        return MotionSession(self.options, video)

    def restore(self, state: bytes) -> MotionSession:
        """The session continues with the options it was opened with (they are in the state),
        whatever this engine's options are, so that it goes on exactly as it would have."""
        return MotionSession.from_state(state)
