"""Person detector on detectron2: ViTDet-H (upstream's choice) or the lighter Mask R-CNN.

Built from the same detectron2 configs upstream uses, but loaded from an explicit weights
file, placed on the session's device (upstream calls ``.cuda()``), and run on several
frames per forward (detectron2 models take a list of images), with the adaptive batch.
Thresholds are ours to set: the person score (upstream ``low_th_c`` 0.8) and the minimum
box size (upstream drops people under 50x100 px without saying so).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..batching import BatchStats, run_adaptive
from .precision import lower_precision

# detectron2 model-zoo config of the lighter detector (upstream's phalp.detector='maskrcnn').
MASKRCNN_CONFIG = "new_baselines/mask_rcnn_regnety_4gf_dds_FPN_400ep_LSJ.py"
# Upstream's detectron2-internal thresholds; our person threshold applies on top.
UPSTREAM_BOX_SCORE = 0.5
UPSTREAM_NMS = 0.4
PERSON_CLASS = 0


@dataclass(frozen=True)
class FrameDetections:
    """People found in one frame; boxes xyxy in the frame's pixels."""

    boxes: np.ndarray  # (N, 4) float32
    masks: np.ndarray  # (N, H, W) bool
    scores: np.ndarray  # (N,) float32
    #: Position of each among the frame's people above the score threshold, before the size
    #: filter: what upstream's detection records carry as ``extra_data``.
    upstream_index: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.scores)


def keep_people(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, threshold: float,
                min_width: float, min_height: float) -> tuple[np.ndarray, np.ndarray]:
    """(indices, upstream positions) of the people to keep, in upstream's order.

    People: the person class above the score threshold, ordered by decreasing score with a
    stable sort. detectron2 returns detections by decreasing score, but where many boxes
    pass its NMS it sorts them unstably, so equal scores (random weights saturate at 1.0)
    could come in any order; a stable sort keeps them in detectron2's order, which is the
    order upstream takes them in. Then the minimum size, which upstream applies after
    numbering the people (the numbers are its ``extra_data``).
    """
    people = np.flatnonzero((classes == PERSON_CLASS) & (scores > threshold))
    people = people[np.argsort(-scores[people], kind="stable")]
    width, height = boxes[people, 2] - boxes[people, 0], boxes[people, 3] - boxes[people, 1]
    large = np.flatnonzero((width >= min_width) & (height >= min_height))
    return people[large], large


class PersonDetector:
    def __init__(self, kind: str, weights: Path, device: torch.device, threshold: float,
                 min_width: float, min_height: float, max_batch: int, precision: str = "fp32") -> None:
        from detectron2.checkpoint import DetectionCheckpointer
        from detectron2.config import LazyConfig, instantiate

        if kind == "vitdet":
            import phalp  # its package ships the ViTDet-H config upstream uses
            cfg = LazyConfig.load(str(Path(phalp.__file__).parent / "configs" / "cascade_mask_rcnn_vitdet_h_75ep.py"))
            for predictor in cfg.model.roi_heads.box_predictors:
                predictor.test_score_thresh = min(UPSTREAM_BOX_SCORE, threshold)
        else:
            from detectron2 import model_zoo
            cfg = model_zoo.get_config(MASKRCNN_CONFIG, trained=False)
            cfg.model.roi_heads.box_predictor.test_score_thresh = min(UPSTREAM_BOX_SCORE, threshold)
            cfg.model.roi_heads.box_predictor.test_nms_thresh = UPSTREAM_NMS
        self.model = instantiate(cfg.model)
        DetectionCheckpointer(self.model).load(str(weights))  # a local .pkl: never a URL
        lower_precision(self.model, "backbone", precision)
        self.model.eval().to(device)
        import detectron2.data.transforms as T

        mapper = instantiate(cfg.dataloader.test.mapper)
        augmentations = mapper.augmentations
        self.augmentations = augmentations if isinstance(augmentations, T.AugmentationList) \
            else T.AugmentationList(list(augmentations))
        self.input_format = mapper.image_format
        self.device = device
        self.threshold, self.min_width, self.min_height = threshold, min_width, min_height
        self.max_batch = max_batch

    def _input(self, frame_rgb: np.ndarray) -> dict:
        import detectron2.data.transforms as T

        image = frame_rgb if self.input_format == "RGB" else frame_rgb[:, :, ::-1]
        height, width = image.shape[:2]
        augmented = T.AugInput(np.ascontiguousarray(image))
        self.augmentations(augmented)  # resizes in place (shortest edge, as upstream)
        tensor = torch.as_tensor(augmented.image.transpose(2, 0, 1).astype("float32"))
        return {"image": tensor, "height": height, "width": width}

    def _forward(self, frames: np.ndarray, batch: slice) -> list[FrameDetections]:
        inputs = [self._input(frame) for frame in frames[batch]]
        with torch.inference_mode():
            outputs = self.model(inputs)
        result = []
        for output in outputs:
            instances = output["instances"].to("cpu")
            boxes = instances.pred_boxes.tensor.float().numpy()
            scores = instances.scores.float().numpy()
            classes = instances.pred_classes.numpy()
            keep, upstream_index = keep_people(boxes, scores, classes, self.threshold, self.min_width,
                                               self.min_height)
            result.append(FrameDetections(boxes=boxes[keep].astype(np.float32),
                                          masks=instances.pred_masks.numpy()[keep].astype(bool),
                                          scores=scores[keep].astype(np.float32),
                                          upstream_index=upstream_index.astype(np.int64)))
        return result

    def __call__(self, frames: np.ndarray, stats: BatchStats | None = None,
                 max_batch: int | None = None) -> list[FrameDetections]:
        """Detections for each RGB frame of ``frames`` (N, H, W, 3), at most ``max_batch``
        (default: the configured batch) frames at a time."""
        return run_adaptive(lambda s: self._forward(frames, s), len(frames), max_batch or self.max_batch, stats)
