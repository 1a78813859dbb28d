"""A video's session: foreground model and tracker, frame after frame, and its state as a
small self-contained binary (a JSON header and the raw arrays)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict

import numpy as np

from ..base import VideoSpec
from ..framewise import FramewiseSession
from ..state_codec import StateFormat
from ..tracking.tracker import Detections, track_from_state, track_to_state
from .blobs import BlobTracker
from .foreground import ForegroundModel, shrink_factor, shrunk_frames
from .options import MotionOptions

ENGINE_VERSION = "1.0"
_STATE = StateFormat(b"POSE-PIPELINE-MOTION-STATE\n", 2, ENGINE_VERSION, "motion engine")


class MotionSession(FramewiseSession):
    engine_name = "motion engine"

    def __init__(self, options: MotionOptions, video: VideoSpec, next_frame: int = 0,
                 foreground: ForegroundModel | None = None, tracker: BlobTracker | None = None) -> None:
        super().__init__(video, tracker or BlobTracker(options, (video.frame_width, video.frame_height)), next_frame)
        self.options = options
        factor = shrink_factor(video.frame_width, video.frame_height, options.work_side)
        self.foreground = foreground or ForegroundModel(options, factor)

    def images(self, frames: np.ndarray) -> Iterator[np.ndarray]:
        return shrunk_frames(frames, self.foreground.factor)

    def detect(self, frame_index: int, image: np.ndarray) -> Detections:
        return self.foreground.detect(image)

    def close(self) -> None:
        super().close()
        self.foreground.background = self.foreground.foreground_run = None

    # --- state ------------------------------------------------------------------------------

    def export_state(self) -> bytes:
        self.check_open()
        header = {
            "options": self.options.to_dict(),
            "video": asdict(self.video),
            "next_frame": self.next_frame,
            "next_id": self.tracker.next_id,
            "tracks": [track_to_state(t) for t in self.tracker.tracks],
        }
        arrays: dict[str, np.ndarray] = {}
        foreground = self.foreground
        if foreground.background is not None and foreground.foreground_run is not None:
            arrays = {"background": foreground.background, "foreground_run": foreground.foreground_run}
        return _STATE.pack(header, arrays)

    @classmethod
    def from_state(cls, state: bytes) -> MotionSession:
        header, arrays = _STATE.unpack(state)
        options = MotionOptions.from_mapping(header["options"])
        video = VideoSpec(**header["video"])
        factor = shrink_factor(video.frame_width, video.frame_height, options.work_side)
        foreground = ForegroundModel(options, factor, arrays.get("background"), arrays.get("foreground_run"))
        tracker = BlobTracker(options, (video.frame_width, video.frame_height),
                              [track_from_state(d) for d in header["tracks"]], header["next_id"])
        return cls(options, video, header["next_frame"], foreground, tracker)
