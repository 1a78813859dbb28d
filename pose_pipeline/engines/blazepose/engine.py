"""The blazepose engine: BlazePose skeletons of everyone in view, on the CPU.

Per frame, in order:

1. Regions. Each person followed from the previous frame carries a region into this one (from
   the landmark model's auxiliary landmarks, as BlazePose does, so it turns with the person).
   The person detector (``detector.py``: SSD MobileNetV2, every visible body, whatever the
   face) looks for newcomers on every ``detect_every``-th frame (by the video's frame index,
   so that chunking changes nothing) and on every frame while nobody is followed, in the views
   of ``views.py`` (the whole frame, tiles for small people, turned views for people upside
   down or lying); a detection that overlaps someone followed is that person.
2. Skeletons. The landmark model runs on each region, carried regions first; a region
   whose pose presence is under ``presence_threshold`` holds nobody, and one whose heatmap
   confidence is under ``confidence_threshold`` holds a pose the model made up: both are
   dropped. A skeleton whose joints lie where a kept one's do (keypoint similarity over
   ``duplicate_similarity``), or whose box is mostly a kept one's, is the same person found
   twice. A person's box is that of the model's person mask, with the visible joints.
3. Ids. The shared Kalman + Hungarian tracker (``PoseTracker``) with keypoint similarity and
   the colours of the person's torso and legs.

The session state is the followed people, the views' memory and the tracker's tracks, written
exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ...assets.wheels import sha256_of
from ...errors import InternalError
from ...results.schema import EngineInfo, Person
from ..base import Engine, VideoSpec
from ..boxes import box_iou, intersection_area, box_area
from ..framewise import FramewiseSession
from ..state_codec import StateFormat
from ..tracking.tracker import Detections, TrackerOptions, track_from_state, track_to_state
from .appearance import SIZE, appearance
from .detector import INPUT_SIZE as DETECTOR_INPUT
from .detector import NUM_ANCHORS, NUM_CLASSES, PersonDetector
from .face_detector import INPUT_SIZE as FACE_INPUT
from .face_detector import NUM_ANCHORS as FACE_ANCHORS
from .face_detector import FaceDetector
from .geometry import Roi
from .landmarks import INPUT_SIZE as LANDMARK_INPUT
from .landmarks import OUTPUTS as LANDMARK_OUTPUTS
from .landmarks import PoseLandmarker, PoseLandmarks
from .models import ModelPaths
from .options import BlazePoseOptions
from .runtime import TfliteModel
from .tracking import PoseTracker, skeleton_similarity
from .views import Views

ENGINE_VERSION = "2.0"
JOINT_FORMAT = "blazepose33"
_STATE = StateFormat(b"POSE-PIPELINE-BLAZEPOSE-STATE\n", 2, ENGINE_VERSION, "blazepose engine")
_VISIBLE = 0.5  # joints at least this visible extend the person's box
#: A detection overlapping someone followed by this IoU is that person.
_FOLLOWED_IOU = 0.5
#: A skeleton whose box lies this much inside a kept one's is that person found twice.
_INSIDE = 0.8
#: The landmark model's region around a detected box: this many times its longer side.
BOX_TO_ROI = 1.25


@dataclass(frozen=True)
class Followed:
    """Someone found in the previous frame: where to look for them in this one."""

    roi: Roi
    box: np.ndarray  # (4,) xyxy where they were


class BlazePoseEngine(Engine):
    """Loads the three models once per process; sessions share them (one frame at a time)."""

    def __init__(self, **options: Any) -> None:
        self.options = BlazePoseOptions.from_mapping(options)
        self.holdback_frames = self.options.n_init - 1
        paths: ModelPaths = self.options.model_paths()
        paths.check()
        hint = paths.fetch_hint()
        self.detector_model = TfliteModel(paths.detector, DETECTOR_INPUT,
                                          {"boxes": (NUM_ANCHORS, 4), "classes": (NUM_ANCHORS, NUM_CLASSES)},
                                          self.options.threads, hint)
        self.face_detector_model = TfliteModel(paths.face_detector, FACE_INPUT,
                                               {"boxes": (FACE_ANCHORS, 12), "scores": (FACE_ANCHORS, 1)},
                                               self.options.threads, hint)
        self.landmark_model = TfliteModel(paths.landmarks, LANDMARK_INPUT, LANDMARK_OUTPUTS, self.options.threads, hint)
        #: Which model files a state was made with: a session continues only on the same ones.
        self.models_sha256 = [sha256_of(path) for path, _, _ in paths.files()]

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(
            name="blazepose",
            version=f"{ENGINE_VERSION} (SSD MobileNetV2 person detector + BlazePose detector and full landmark "
                    "model, LiteRT)",
            description=("A full-body person detector (SSD MobileNetV2, Open Images V4), BlazePose's detector for "
                         "close-ups and its full landmark model (all Google's, Apache 2.0) on the CPU, everyone "
                         "in view: 33 joints per "
                         "person in source pixels with a visibility each, and the same 33 joints in metres around "
                         "the hips (3D shape of the pose, no position in the scene); boxes from the model's person "
                         "mask; ids from Kalman + Hungarian tracking with keypoint and colour similarity. No SMPL "
                         "and no camera. It finds people down to about min_height pixels tall, in any "
                         "orientation (docs/engines.md gives its scores on a public benchmark)."),
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
        session = BlazePoseSession(self, options, VideoSpec(**header["video"]), header["next_frame"],
                                   {int(turns): last for turns, last in header["turns_found"].items()})
        session.tracker.tracks = [track_from_state(d) for d in header["tracks"]]
        session.tracker.next_id = header["next_id"]
        session.followed = [Followed(Roi(*roi), np.array(box, dtype=np.float64)) for roi, box in header["followed"]]
        return session


class BlazePoseSession(FramewiseSession):
    engine_name = "blazepose engine"

    def __init__(self, engine: BlazePoseEngine, options: BlazePoseOptions, video: VideoSpec,
                 next_frame: int = 0, turns_found: dict[int, int] | None = None) -> None:
        tracker = PoseTracker(TrackerOptions(options.n_init, options.max_age, options.max_predicted,
                                             options.min_similarity),
                              (video.frame_width, video.frame_height), keypoint_weight=options.keypoint_weight,
                              appearance_weight=options.appearance_weight,
                              recover_appearance=options.recover_appearance)
        super().__init__(video, tracker, next_frame)
        self.engine = engine
        self.options = options
        self.detector = PersonDetector(engine.detector_model, options.detection_threshold)
        self.face_detector = FaceDetector(engine.face_detector_model, options.face_threshold)
        self.whole_frame = [Roi.letterbox(0, 0, video.frame_width, video.frame_height)]
        self.landmarker = PoseLandmarker(engine.landmark_model)
        self.views = Views(video.frame_width, video.frame_height, options.min_height, options.turned_views,
                           turns_found)
        #: People found in the previous frame.
        self.followed: list[Followed] = []

    def detect(self, frame_index: int, image: np.ndarray) -> Detections:
        width, height = self.video.frame_width, self.video.frame_height
        regions = [f.roi for f in self.followed]  # first: a detection of one of them is a duplicate
        detection = frame_index // self.options.detect_every
        if not self.followed or frame_index % self.options.detect_every == 0:
            boxes = np.array([f.box for f in self.followed]).reshape(-1, 4)
            for found in self.detector.detect(image, self.views.regions(detection)):
                if len(boxes) and box_iou(found.box[None], boxes).max() >= _FOLLOWED_IOU:
                    continue  # someone followed
                regions.append(roi_around(found.box, found.rotation))
            for face in self.face_detector.detect(image, self.whole_frame):
                region = face.roi()
                if not any(region.near(f.roi) for f in self.followed) and not _inside(face.box, boxes):
                    regions.append(region)
        people: list[Person] = []
        poses: list[PoseLandmarks] = []
        followed: list[Followed] = []
        for region in regions:
            if len(people) == self.options.max_people:
                break
            pose = self.landmarker.run(image, region)
            if pose.presence < self.options.presence_threshold or pose.confidence < self.options.confidence_threshold:
                continue
            box = person_box(pose, width, height)
            if box is None:
                continue
            person = _person(pose, box)
            if any(_same_person(other, person, self.options.duplicate_similarity) for other in people):
                continue
            people.append(person)
            poses.append(pose)
            followed.append(Followed(pose.next_roi, box.astype(np.float64)))
            self.views.saw(detection, pose.next_roi.rotation)
        self.followed = followed
        colours = np.array([appearance(image, pose.points) for pose in poses], dtype=np.float32).reshape(-1, SIZE)
        return Detections(tuple(people), appearance=colours)

    def close(self) -> None:
        super().close()
        self.followed = []

    def export_state(self) -> bytes:
        self.check_open()
        header = {
            "models_sha256": self.engine.models_sha256,
            "options": self.options.to_dict(),
            "video": asdict(self.video),
            "next_frame": self.next_frame,
            "next_id": self.tracker.next_id,
            "tracks": [track_to_state(t) for t in self.tracker.tracks],
            "followed": [[f.roi.as_list(), f.box.tolist()] for f in self.followed],
            "turns_found": {str(turns): last for turns, last in self.views.found.items()},
        }
        return _STATE.pack(header)


def roi_around(box: np.ndarray, rotation: float) -> Roi:
    """The landmark model's region for a person detected in ``box``, upright in a view turned by
    ``rotation``: centred on the box, ``BOX_TO_ROI`` times its longer side."""
    side = BOX_TO_ROI * float(max(box[2] - box[0], box[3] - box[1]))
    return Roi(float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2, side, rotation)


def _inside(box: np.ndarray, boxes: np.ndarray) -> bool:
    """Whether the centre of ``box`` (a face) is inside one of ``boxes`` (people followed)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return bool(np.any((boxes[:, 0] <= cx) & (cx <= boxes[:, 2]) & (boxes[:, 1] <= cy) & (cy <= boxes[:, 3])))


def _same_person(kept: Person, person: Person, similarity: float) -> bool:
    if skeleton_similarity(kept, person) > similarity:
        return True
    inside = intersection_area(person.bbox[None].astype(np.float64), kept.bbox[None].astype(np.float64))[0, 0]
    return bool(inside >= _INSIDE * box_area(person.bbox[None].astype(np.float64))[0])


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
