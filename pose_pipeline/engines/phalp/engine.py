"""PhalpEngine: upstream PHALP + HMR2.0 behind the engine interface, one chunk at a time.

Per chunk: detect people in all frames (batched), compute HMR2 + appearance features for
all people of all frames (batched across frames, adaptive batch size), then associate frame
by frame with upstream's tracker, carrying the tracker between chunks. Nothing is written to
disk, nothing is rendered, no exception is swallowed, and a failed chunk leaves the session
as it was after the previous chunk.

Upstream is imported in ``PhalpEngine.__init__`` only, so this module imports without it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from importlib import metadata
from typing import Any

import numpy as np
import torch

from ...errors import EngineUnavailable, GpuOutOfMemory, InvalidOption
from ...results.schema import BodyModel, CameraModel, EngineInfo, Frame, Person
from ...video import FrameChunk
from ..base import ChunkOutput, Engine, Session, VideoSpec
from .. import gpu
from ..batching import BatchStats, free_cuda_cache, run_adaptive
from .convert import JOINT_FORMAT, full_frame_camera, record_to_person, smpl_body_model
from .options import PhalpOptions
from .state import dump_state, load_state
from .tracking import frame_name, track_frame

log = logging.getLogger(__name__)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


class PhalpEngine(Engine):
    def __init__(self, **options: Any) -> None:
        from .detector import PersonDetector
        from .model import build_model
        from .upstream import import_neural_renderer, import_upstream

        self.options = PhalpOptions.from_mapping(options)
        self.holdback_frames = self.options.n_init - 1
        self.up = import_upstream()
        neural_renderer = import_neural_renderer()
        self.paths = self.options.weight_paths()
        self.paths.check()  # every missing file in one message, before any loading
        self.device = gpu.select_device(self.options.device)
        self.model = build_model(self.up, neural_renderer, self.options, self.paths, self.device)
        self.detector = PersonDetector(
            self.options.detector, self.paths.detector_weights, self.device, self.options.detection_threshold,
            self.options.min_box_width, self.options.min_box_height, self.options.detector_batch,
            self.options.detector_precision or self.options.precision)
        self.last_batch_stats: dict[str, BatchStats] = {}
        # HMR2's own SMPL layer: the one its pred_vertices come from (PHALP's loads the same file).
        smpl = self.model.HMAR.model.smpl
        self._body_model = smpl_body_model(smpl.J_regressor.detach().cpu().numpy(),
                                           smpl.v_template.detach().cpu().numpy(),
                                           smpl.shapedirs.detach().cpu().numpy(), smpl.faces)

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(
            name="phalp",
            version=f"phalp {_version('phalp')}, hmr2 {_version('hmr2')}",
            description=("PHALP tracking with HMR2.0 (4D-Humans): SMPL body, 3D and 2D joints per tracked "
                         f"person; detector {self.options.detector}"),
            provides_3d=True,
            joint_format=JOINT_FORMAT,
        )

    def camera(self, video: VideoSpec) -> CameraModel:
        return full_frame_camera(video.frame_height, video.frame_width)

    def body_model(self) -> BodyModel:
        return self._body_model

    def open(self, video: VideoSpec) -> PhalpSession:
        return PhalpSession(self, video, self._new_tracker(), next_frame=0)

    def restore(self, state: bytes) -> PhalpSession:
        tracker, session = load_state(state, self.model)
        if session["options"] != self._tracking_options():
            raise InvalidOption("the saved tracker state was made with other tracking options; "
                                "resume it with the same engine.options", option="engine.options")
        return PhalpSession(self, VideoSpec(**session["video"]), tracker, next_frame=session["next_frame"])

    def check_health(self) -> None:
        if self.device.type == "cuda":
            try:
                torch.cuda.synchronize(self.device)
            except RuntimeError as exc:  # lost device, Xid errors: the replica must be replaced
                raise EngineUnavailable(f"the CUDA device failed: {exc}", engine="phalp") from None

    def close(self) -> None:
        del self.model, self.detector  # the engine is not used after close
        free_cuda_cache()

    # --- helpers used by sessions

    def _new_tracker(self) -> Any:
        cfg = self.model.cfg.phalp
        metric = self.up.nn_matching.NearestNeighborDistanceMetric(self.model.cfg, cfg.hungarian_th, cfg.past_lookback)
        return self.up.Tracker(self.model.cfg, metric, max_age=cfg.max_age_track, n_init=cfg.n_init,
                               phalp_tracker=self.model, dims=[4096, 4096, 99])

    def _tracking_options(self) -> dict[str, Any]:
        o = self.options
        return {k: getattr(o, k) for k in ("n_init", "max_age", "predict", "pose_distance", "distance_type",
                                           "hungarian_th", "track_history", "alpha", "past_lookback")}


class PhalpSession(Session):
    def __init__(self, engine: PhalpEngine, video: VideoSpec, tracker: Any, next_frame: int) -> None:
        self.engine, self.video, self.tracker, self.next_frame = engine, video, tracker, next_frame
        #: Batch limits per model, lowered for the rest of the job where CUDA ran out of memory
        #: (each chunk would otherwise fail its way down from the configured size again).
        self.batch_limits = {"detector": engine.options.detector_batch, "hmr2": engine.options.max_batch}
        #: Seconds and peak CUDA memory per stage over the session (detect, hmr2, associate).
        self.stages = gpu.StageMeter(engine.device)

    def process(self, chunk: FrameChunk) -> ChunkOutput:
        if chunk.first_frame != self.next_frame:
            raise InvalidOption(f"chunk starts at frame {chunk.first_frame}, the session expects "
                                f"{self.next_frame}", option="chunk")
        try:
            detections = self._detect_and_measure(chunk)
        except torch.cuda.OutOfMemoryError:  # outside the adaptive batches (e.g. a single huge frame)
            free_cuda_cache()
            raise GpuOutOfMemory("CUDA out of memory while detecting people") from None
        snapshot = dump_state(self.tracker, {})
        try:
            output = self._associate(chunk, detections)
        except BaseException as exc:
            # Leave the session as it was after the previous chunk, then report.
            self.tracker, _ = load_state(snapshot, self.engine.model)
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                free_cuda_cache()
                raise GpuOutOfMemory("CUDA out of memory during association") from None
            raise
        self.next_frame = chunk.first_frame + len(chunk)
        return output

    def export_state(self) -> bytes:
        session = {"video": asdict(self.video), "next_frame": self.next_frame,
                   "options": self.engine._tracking_options()}
        return dump_state(self.tracker, session)

    def close(self) -> None:
        self.tracker = None

    # --- steps

    def _detect_and_measure(self, chunk: FrameChunk) -> list[list]:
        """Upstream ``Detection`` objects per frame; GPU work batched across the chunk."""
        engine = self.engine
        stats = engine.last_batch_stats = {"detector": BatchStats(), "hmr2": BatchStats()}
        with self.stages("detect"):
            found = engine.detector(chunk.frames, stats["detector"], self.batch_limits["detector"])
        with self.stages("hmr2"):
            frames_bgr = [np.ascontiguousarray(frame[:, :, ::-1]) for frame in chunk.frames]  # upstream is cv2/BGR
            items = [(i, found[i].boxes[j], found[i].masks[j])
                     for i in range(len(found)) for j in range(len(found[i]))]
            from .model import PersonFeatures

            features = PersonFeatures(engine.up, engine.model, self.video.frame_height, self.video.frame_width,
                                      vertices=self.video.vertices)
            per_item = run_adaptive(lambda s: features(frames_bgr, items, s), len(items), self.batch_limits["hmr2"],
                                    stats["hmr2"])
        self.batch_limits = {model: model_stats.limit for model, model_stats in stats.items()}
        per_frame: list[list] = [[] for _ in range(len(chunk))]
        extra = [(int(frame.upstream_index[j]), float(frame.scores[j])) for frame in found for j in range(len(frame))]
        for (position, box, _), data, (upstream_index, score) in zip(items, per_item, extra):
            t = chunk.first_frame + position
            data.update({
                "bbox": np.array([box[0], box[1], box[2] - box[0], box[3] - box[1]]),
                "conf": score, "size": [self.video.frame_height, self.video.frame_width],
                "img_path": frame_name(t), "img_name": frame_name(t), "class_name": 0, "time": t,
                # as upstream's records: ground truth flag 1, no annotations, and extra_data
                # from run_additional_models (the person's number in the frame)
                "ground_truth": 1, "annotations": [], "extra_data": upstream_index,
            })
            per_frame[position].append(engine.up.Detection(data))
        return per_frame

    def _associate(self, chunk: FrameChunk, detections: list[list]) -> ChunkOutput:
        options = self.engine.options
        people: list[list[Person]] = [[] for _ in range(len(chunk))]
        corrections: list[tuple[int, Person]] = []
        with self.stages("associate"):
            for position, frame_detections in enumerate(detections):
                t = chunk.first_frame + position
                report = track_frame(self.tracker, frame_detections, t, options.n_init, options.include_undetected)
                for track_id, record, detected in report.people:
                    people[position].append(record_to_person(record, track_id, detected))
                for past, track_id, record in report.backfill:
                    person = record_to_person(record, track_id, True)
                    if past >= chunk.first_frame:
                        people[past - chunk.first_frame].append(person)
                    else:
                        corrections.append((past, person))
        frames = tuple(
            Frame(index=chunk.first_frame + i, source_index=int(chunk.source_indices[i]),
                  time_s=float(chunk.times[i]), people=tuple(people[i]))
            for i in range(len(chunk)))
        return ChunkOutput(chunk_index=chunk.index, frames=frames, corrections=tuple(corrections))

