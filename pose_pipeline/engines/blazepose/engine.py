"""The blazepose engine: BlazePose skeletons of several people per frame, on the CPU.

Per frame, in order:

1. Regions. Each person found in the previous frame carries a region into this one (from
   the landmark model's auxiliary landmarks, as BlazePose does), so the detector need not
   run every frame. The detector runs on every ``detect_every``-th frame (by the video's
   frame index, so that chunking changes nothing), and on every frame while nobody is
   followed; a detection whose region is about that of someone followed is that person.
2. Skeletons. The landmark model runs on each region, carried regions first; a region
   whose pose presence is under ``presence_threshold`` holds nobody, and one whose heatmap
   confidence is under ``confidence_threshold`` holds a pose the model made up: both are
   dropped. A skeleton whose joints lie where a kept one's do (keypoint similarity over
   ``duplicate_similarity``) is the same person found twice. A person's box is that of the
   model's person mask, with the visible joints.
3. Ids. The shared Kalman + Hungarian tracker (``PoseTracker``) with keypoint similarity.

The session state is the carried regions and the tracker's tracks, written exactly.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from ...errors import InternalError
from ...results.schema import EngineInfo, Person
from ...assets.wheels import sha256_of
from ..base import Engine, VideoSpec
from ..framewise import FramewiseSession
from ..state_codec import StateFormat
from ..tracking.tracker import Detections, TrackerOptions, track_from_state, track_to_state
from .detector import INPUT_SIZE as DETECTOR_INPUT
from .detector import NUM_ANCHORS, PoseDetector
from .geometry import Roi
from .landmarks import INPUT_SIZE as LANDMARK_INPUT
from .landmarks import OUTPUTS as LANDMARK_OUTPUTS
from .landmarks import PoseLandmarker, PoseLandmarks
from .models import ModelPaths
from .options import BlazePoseOptions
from .runtime import TfliteModel
from .tiles import detection_regions
from .tracking import PoseTracker, skeleton_similarity

ENGINE_VERSION = "1.0"
JOINT_FORMAT = "blazepose33"
_STATE = StateFormat(b"POSE-PIPELINE-BLAZEPOSE-STATE\n", 1, ENGINE_VERSION, "blazepose engine")
_VISIBLE = 0.5  # joints at least this visible extend the person's box


class BlazePoseEngine(Engine):
    """Loads the two models once per process; sessions share them (one frame at a time)."""

    def __init__(self, **options: Any) -> None:
        self.options = BlazePoseOptions.from_mapping(options)
        self.holdback_frames = self.options.n_init - 1
        paths: ModelPaths = self.options.model_paths()
        paths.check()
        hint = paths.fetch_hint()
        self.detector_model = TfliteModel(paths.detector, DETECTOR_INPUT,
                                          {"boxes": (NUM_ANCHORS, 12), "scores": (NUM_ANCHORS, 1)},
                                          self.options.threads, hint)
        self.landmark_model = TfliteModel(paths.landmarks, LANDMARK_INPUT, LANDMARK_OUTPUTS, self.options.threads, hint)
        #: Which model files a state was made with: a session continues only on the same ones.
        self.models_sha256 = [sha256_of(paths.detector), sha256_of(paths.landmarks)]

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(
            name="blazepose",
            version=f"{ENGINE_VERSION} (BlazePose detector + full landmark model, LiteRT)",
            description=("BlazePose (Google's pose detector and full landmark model, Apache 2.0) on the CPU, "
                         "several people per frame: 33 joints per person in source pixels with a visibility "
                         "each, and the same 33 joints in metres around the hips (3D shape of the pose, no "
                         "position in the scene); boxes from the model's person mask; ids from Kalman + "
                         "Hungarian tracking with keypoint similarity. No SMPL and no camera. It finds people "
                         "whose face is visible and not too small (see the tiles option)."),
            provides_3d=True,
            joint_format=JOINT_FORMAT,
        )

    def open(self, video: VideoSpec) -> BlazePoseSession:
        return BlazePoseSession(self, self.options, video)

    def restore(self, state: bytes) -> BlazePoseSession:
        """The session continues with the options it was opened with (they are in the state)."""
        header, _ = _STATE.unpack(state)
        if header["models_sha256"] != self.models_sha256:
            raise InternalError("the state was made with other blazepose model files "
                                f"(sha256 {header['models_sha256']}, these are {self.models_sha256})")
        options = BlazePoseOptions.from_mapping(header["options"])
        session = BlazePoseSession(self, options, VideoSpec(**header["video"]), header["next_frame"])
        session.tracker.tracks = [track_from_state(d) for d in header["tracks"]]
        session.tracker.next_id = header["next_id"]
        session.regions = [Roi(*values) for values in header["regions"]]
        return session


class BlazePoseSession(FramewiseSession):
    engine_name = "blazepose engine"

    def __init__(self, engine: BlazePoseEngine, options: BlazePoseOptions, video: VideoSpec,
                 next_frame: int = 0) -> None:
        tracker = PoseTracker(TrackerOptions(options.n_init, options.max_age, options.max_predicted,
                                             options.min_similarity),
                              (video.frame_width, video.frame_height), keypoint_weight=options.keypoint_weight)
        super().__init__(video, tracker, next_frame)
        self.engine = engine
        self.options = options
        self.detector = PoseDetector(engine.detector_model, options.detection_threshold)
        self.landmarker = PoseLandmarker(engine.landmark_model)
        self.detection_regions = detection_regions(video.frame_width, video.frame_height, options.tiles)
        #: Regions carried from the previous frame, one per person found there.
        self.regions: list[Roi] = []

    def detect(self, frame_index: int, image: np.ndarray) -> Detections:
        regions = list(self.regions)
        if not regions or frame_index % self.options.detect_every == 0:
            for detection in self.detector.detect(image, self.detection_regions):
                region = detection.roi()
                if not any(region.near(followed) for followed in self.regions):  # someone followed: skip
                    regions.append(region)
        found: list[Person] = []
        carried: list[Roi] = []
        for region in regions:  # people followed first: a detection of one of them is a duplicate
            if len(found) == self.options.max_people:
                break
            pose = self.landmarker.run(image, region)
            if pose.presence < self.options.presence_threshold or pose.confidence < self.options.confidence_threshold:
                continue
            box = person_box(pose, self.video.frame_width, self.video.frame_height)
            if box is None:
                continue
            person = _person(pose, box)
            if any(skeleton_similarity(other, person) > self.options.duplicate_similarity for other in found):
                continue
            found.append(person)
            carried.append(pose.next_roi)
        self.regions = carried
        return Detections(tuple(found))

    def close(self) -> None:
        super().close()
        self.regions = []

    def export_state(self) -> bytes:
        self.check_open()
        header = {
            "models_sha256": self.engine.models_sha256,
            "options": self.options.to_dict(),
            "video": asdict(self.video),
            "next_frame": self.next_frame,
            "next_id": self.tracker.next_id,
            "tracks": [track_to_state(t) for t in self.tracker.tracks],
            "regions": [r.as_list() for r in self.regions],
        }
        return _STATE.pack(header)


def person_box(pose: PoseLandmarks, width: int, height: int) -> np.ndarray | None:
    """xyxy box of the person in the frame: their mask, with their visible joints; None
    when nothing of them is inside the frame."""
    points = [pose.points[pose.visibility >= _VISIBLE]]
    if pose.mask_points is not None:
        points.append(pose.mask_points)
    every = np.concatenate(points)
    inside = (every[:, 0] >= 0) & (every[:, 0] <= width) & (every[:, 1] >= 0) & (every[:, 1] <= height)
    every = every[inside]
    if len(every) < 2:
        return None
    box = np.concatenate([every.min(axis=0), every.max(axis=0)])
    if box[2] - box[0] < 1 or box[3] - box[1] < 1:
        return None
    return box


def _person(pose: PoseLandmarks, box: np.ndarray) -> Person:
    return Person(track_id=0, bbox=box.astype(np.float32), score=pose.confidence, detected=True,
                  joints_3d=pose.world.astype(np.float32), joints_2d=pose.points.astype(np.float32),
                  joints_confidence=pose.visibility.astype(np.float32))
