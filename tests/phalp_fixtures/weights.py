"""Random weights in upstream's exact file formats and cache layout, written by the tests.

``write_cache(home)`` lays out what upstream downloads into ``$HOME`` (``.cache/phalp``,
``.cache/4DHumans``, ``.cache/torch``, ``.torch/iopath_cache``): upstream's own track.py
runs against it with ``HOME=home``, and our engine with ``weights_dir=home/.cache`` and
``detector_cache=home/.torch/iopath_cache``. Every network file is the state of upstream's
own module, built by upstream's code with its own initialisation under a fixed seed and
saved in the format upstream loads (HMR2.0: a Lightning checkpoint with its
``model_config.yaml`` two folders up; HMAR: ``{'model': ...}``; the pose predictor: a
Lightning ``state_dict`` with its ``configs:`` yaml; detectors: detectron2 model-zoo
``.pkl``). The body model is the synthetic SMPL of ``smpl.py``.

Choices, and why:
- HMR2.0's backbone is hard-coded to ViT-H (upstream's ``vit(cfg)`` takes no size from the
  config), so it stays full size: about 2.5 GB and about 1.4 s per crop on 2 CPU cores. The
  SMPL head is upstream's transformer decoder with ``INIT_DECODER_XAVIER`` (upstream's own
  option: read-outs at gain 0.01), so that random bodies stay near the mean pose, in front
  of the camera.
- The pose predictor's transformer is small (its size is configuration).
- The person detector is the light one (RegNetY-4GF Mask R-CNN, upstream's ``maskrcnn``);
  ``write_vitdet`` adds upstream's default, ViTDet-H (about 2.5 GB, for the GPU benchmark).
  A random Mask R-CNN gives 100 indistinguishable boxes per frame; three changes to its
  random weights make it behave like a detector of the scene's figures: box regression
  zeroed (boxes are the region proposals), the person logit scaled up (scores then differ
  between regions) and biased (a few regions per frame pass the 0.8 threshold). Scores still
  saturate at 1.0, so ties happen: what the engine's stable detection order is for.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from . import smpl

REGNETY_CONFIG = "new_baselines/mask_rcnn_regnety_4gf_dds_FPN_400ep_LSJ.py"
X101_CONFIG = "COCO-InstanceSegmentation/mask_rcnn_X_101_32x8d_FPN_3x.yaml"
DETECTRON2_URL = "https://dl.fbaipublicfiles.com/"
REGNETY_PATH = "detectron2/new_baselines/mask_rcnn_regnety_4gf_dds_FPN_400ep_LSJ/42045954/model_final_ef3a80.pkl"
VITDET_PATH = "detectron2/ViTDet/COCO/cascade_mask_rcnn_vitdet_h/f328730692/model_final_f05665.pkl"
HMR2_RUN = "4DHumans/logs/train/multiruns/hmr2/0"
HMR2_CHECKPOINT = HMR2_RUN + "/checkpoints/epoch=35-step=1000000.ckpt"
#: The detector's person logit: scale of its random weights, and bias (see the docstring).
PERSON_LOGIT_SCALE, PERSON_LOGIT_BIAS = 3000.0, 8.0
#: The detector's seed: its random network passes two regions of about 62x62 px per frame
#: of the tests' clip (other seeds find smaller regions, under the minimum box size).
DETECTOR_SEED = 0

HMR2_MODEL_CONFIG = """\
MODEL:
  IMAGE_SIZE: 256
  IMAGE_MEAN: [0.485, 0.456, 0.406]
  IMAGE_STD: [0.229, 0.224, 0.225]
  BACKBONE:
    TYPE: vit
  SMPL_HEAD:
    TYPE: transformer_decoder
    IN_CHANNELS: 2048
    IEF_ITERS: 1
    INIT_DECODER_XAVIER: true
    TRANSFORMER_DECODER:
      depth: 6
      heads: 8
      mlp_dim: 1024
      dim_head: 64
      dropout: 0.0
      emb_dropout: 0.0
      norm: layer
      context_dim: 1280
SMPL:
  MODEL_PATH: data/smpl
  GENDER: neutral
  NUM_BODY_JOINTS: 23
  JOINT_REGRESSOR_EXTRA: data/SMPL_to_J19.pkl
  MEAN_PARAMS: data/smpl_mean_params.npz
EXTRA:
  FOCAL_LENGTH: 5000
  NUM_LOG_IMAGES: 4
  NUM_LOG_SAMPLES_PER_IMAGE: 8
  PELVIS_IND: 39
LOSS_WEIGHTS:
  KEYPOINTS_3D: 0.05
  KEYPOINTS_2D: 0.01
  GLOBAL_ORIENT: 0.001
  BODY_POSE: 0.001
  BETAS: 0.0005
  ADVERSARIAL: 0.0005
TRAIN:
  LR: 1.0e-05
  WEIGHT_DECAY: 0.0001
"""

POSE_PREDICTOR_CONFIG = """\
configs:
  in_feat: 64
  frame_length: 12
  max_people: 1
  mask_type_test: zero
  mask_ratio: 0.0
  num_smpl_heads: 1
  transformer: {depth: 1, heads: 2, mlp_dim: 64, dim_head: 16, dropout: 0.0, emb_dropout: 0.0,
                droppath: 0.0, conv: {pad: 1, stride: 1}}
  extra_feat: {enable: "", pose_shape: {dim: 229, mid_dim: 64, en_dim: 64}}
  ava: {num_action_classes: 80, num_valid_action_classes: 60, predict_valid: true}
"""


@dataclass(frozen=True)
class UpstreamCache:
    """A ``$HOME`` holding upstream's caches, filled with random weights."""

    home: Path

    @property
    def weights_dir(self) -> Path:
        return self.home / ".cache"

    @property
    def detector_cache(self) -> Path:
        return self.home / ".torch" / "iopath_cache"

    def engine_options(self, **options) -> dict:
        """Our engine's options reading this cache (the light detector)."""
        return {"weights_dir": str(self.weights_dir), "detector_cache": str(self.detector_cache),
                "detector": "maskrcnn", **options}


def _save_pickle(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(value, f)


def _save(path: Path, writer) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer(path)
    return path


def _write_body_files(cache: Path, seed: int) -> None:
    model = smpl.smpl_model(seed)
    for place in ("phalp/3D/models/smpl/SMPL_NEUTRAL.pkl", "4DHumans/data/smpl/SMPL_NEUTRAL.pkl"):
        _save_pickle(cache / place, model)
    for folder in ("phalp/3D", "4DHumans/data"):
        _save_pickle(cache / folder / "SMPL_to_J19.pkl", smpl.extra_joint_regressor(seed + 1))
        _save(cache / folder / "smpl_mean_params.npz", lambda p: np.savez(p, **smpl.mean_params()))
    phalp3d = cache / "phalp/3D"
    np.savez(phalp3d / "texture.npz", **smpl.texture())
    bmap, fmap = smpl.uv_maps(seed + 2)
    np.save(phalp3d / "bmap_256.npy", bmap)
    np.save(phalp3d / "fmap_256.npy", fmap)
    np.save(phalp3d / "head_faces.npy", np.arange(0, smpl.NUM_FACES, 7, dtype=np.int64))
    rng = np.random.default_rng(seed + 3)
    # (mean, std) of the pose vector; shorter than 229, as upstream pads it
    np.save(phalp3d / "mean_std.npy", np.stack([rng.normal(0, 0.1, (1, 226)), rng.uniform(0.5, 1.5, (1, 226))]))
    for name in ("ava_labels.pkl", "ava_class_mapping.pkl"):  # checked for by PHALP, unused here
        _save_pickle(cache / "phalp/ava" / name, {})


def _phalp_config(cache: Path):
    from omegaconf import OmegaConf
    from phalp.configs.base import FullConfig

    cfg = OmegaConf.structured(FullConfig)
    cfg.SMPL.MODEL_PATH = str(cache / "phalp/3D/models/smpl")
    cfg.SMPL.JOINT_REGRESSOR_EXTRA = str(cache / "phalp/3D/SMPL_to_J19.pkl")
    cfg.SMPL.TEXTURE = str(cache / "phalp/3D/texture.npz")
    cfg.MODEL.SMPL_HEAD.SMPL_MEAN_PARAMS = str(cache / "phalp/3D/smpl_mean_params.npz")
    cfg.pose_predictor.config_path = str(cache / "phalp/weights/pose_predictor.yaml")
    cfg.pose_predictor.mean_std = str(cache / "phalp/3D/mean_std.npy")
    return cfg


def _write_phalp_networks(cache: Path, seed: int) -> None:
    import torch
    import torchvision

    torch.manual_seed(seed)
    hub = cache / "torch/hub"
    _save(hub / "checkpoints/resnet50-19c8e357.pth",
          lambda p: torch.save(torchvision.models.resnet50().state_dict(), p))
    (cache / "phalp/weights").mkdir(parents=True, exist_ok=True)
    (cache / "phalp/weights/pose_predictor.yaml").write_text(POSE_PREDICTOR_CONFIG)
    from phalp.models.hmar import HMAR
    from phalp.models.predictor import Pose_transformer_v2

    cfg = _phalp_config(cache)
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))
    try:
        torch.manual_seed(seed + 1)
        hmar = HMAR(cfg)
    finally:
        torch.hub.set_dir(previous)
    # upstream keeps the four parts below, strips a 5-letter prefix and renames smplx -> smpl
    parts = ("encoding_head", "texture_head", "backbone", "smpl_head")
    state = {"HMAR." + k.replace("smpl_head", "smplx_head"): v for k, v in hmar.state_dict().items()
             if k.split(".")[0] in parts}
    torch.save({"model": state}, cache / "phalp/weights/hmar_v2_weights.pth")
    torch.manual_seed(seed + 2)
    predictor = Pose_transformer_v2(cfg, SimpleNamespace(HMAR=hmar))
    torch.save({"state_dict": {"encoder." + k: v for k, v in predictor.encoder.state_dict().items()}},
               cache / "phalp/weights/pose_predictor.pth")


def _write_hmr2(cache: Path, seed: int) -> None:
    import pytorch_lightning
    import torch
    from hmr2.configs import get_config
    from hmr2.models import HMR2

    run = cache / HMR2_RUN
    run.mkdir(parents=True, exist_ok=True)
    (run / "model_config.yaml").write_text(HMR2_MODEL_CONFIG)
    cfg = get_config(str(run / "model_config.yaml"), update_cachedir=False)
    cfg.defrost()
    for key in ("MODEL_PATH", "JOINT_REGRESSOR_EXTRA", "MEAN_PARAMS"):
        cfg.SMPL[key] = str(cache / "4DHumans" / cfg.SMPL[key])
    cfg.freeze()
    torch.manual_seed(seed)
    model = HMR2(cfg, init_renderer=False)
    checkpoint = {"epoch": 35, "global_step": 1000000, "pytorch-lightning_version": pytorch_lightning.__version__,
                  "state_dict": model.state_dict(), "hparams_name": "kwargs",
                  "hyper_parameters": {"cfg": get_config(str(run / "model_config.yaml"), update_cachedir=False)}}
    _save(cache / HMR2_CHECKPOINT, lambda p: torch.save(checkpoint, p))
    # upstream's download_models() only checks that the archive is there
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(run / "model_config.yaml", arcname="logs/train/multiruns/hmr2/0/model_config.yaml")
    (cache / "4DHumans/hmr2_data.tar.gz").write_bytes(buffer.getvalue())


def _detectron2_pickle(path: Path, model) -> None:
    weights = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    _save_pickle(path, {"model": weights, "__author__": "Detectron2 Model Zoo"})


def _write_detectors(detector_cache: Path, seed: int) -> None:
    import torch
    from detectron2 import model_zoo
    from detectron2.config import get_cfg, instantiate
    from detectron2.modeling import build_model

    torch.manual_seed(seed)
    cfg = model_zoo.get_config(REGNETY_CONFIG, trained=False)
    model = instantiate(cfg.model)
    with torch.no_grad():
        predictor = model.roi_heads.box_predictor
        predictor.bbox_pred.weight.zero_()
        predictor.bbox_pred.bias.zero_()
        predictor.cls_score.weight[0] *= PERSON_LOGIT_SCALE
        predictor.cls_score.bias[0] = PERSON_LOGIT_BIAS
    _detectron2_pickle(detector_cache / REGNETY_PATH, model)
    # upstream's PHALP also builds an X101 Mask R-CNN (boxes given, masks predicted) at start
    x101 = get_cfg()
    x101.merge_from_file(model_zoo.get_config_file(X101_CONFIG))
    x101.MODEL.DEVICE = "cpu"
    torch.manual_seed(seed + 1)
    url = model_zoo.get_checkpoint_url(X101_CONFIG)
    _detectron2_pickle(detector_cache / url[len(DETECTRON2_URL):], build_model(x101))


def _people_per_frame(model, frames: np.ndarray, threshold: float, min_size: tuple[float, float]) -> float:
    """Mean count of the people our detector keeps in ``frames`` (RGB), preprocessed as upstream
    and ``PersonDetector`` do for ViTDet (shortest edge 1024, at most 1024)."""
    import detectron2.data.transforms as T
    import torch

    from pose_pipeline.engines.phalp.detector import keep_people

    resize = T.ResizeShortestEdge(1024, 1024)
    counts = []
    with torch.inference_mode():
        for frame in frames:
            image = resize.get_transform(frame).apply_image(frame)
            tensor = torch.as_tensor(image.transpose(2, 0, 1).astype("float32"))
            found = model([{"image": tensor, "height": frame.shape[0], "width": frame.shape[1]}])[0]["instances"]
            keep, _ = keep_people(found.pred_boxes.tensor.float().cpu().numpy(), found.scores.float().cpu().numpy(),
                                  found.pred_classes.cpu().numpy(), threshold, *min_size)
            counts.append(len(keep))
    return float(np.mean(counts))


def write_vitdet(home: Path, frames: np.ndarray, people: float, threshold: float = 0.8,
                 min_size: tuple[float, float] = (50.0, 100.0), device: str = "cpu",
                 seed: int = DETECTOR_SEED) -> float:
    """Random ViTDet-H (upstream's detector, its own config) that keeps about ``people`` per frame
    of ``frames`` (RGB) at this threshold and minimum size; returns the mean it keeps.

    As for the Mask R-CNN, each of the three cascade stages predicts no box offset (boxes are
    the proposals) and its person logit is scaled; the person bias, shared by the stages, is
    then bisected on ``frames`` until the count is reached, so that the benchmark's HMR2 has
    a realistic number of people to measure.
    """
    import phalp
    import torch
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.load(str(Path(phalp.__file__).parent / "configs" / "cascade_mask_rcnn_vitdet_h_75ep.py"))
    for predictor in cfg.model.roi_heads.box_predictors:
        predictor.test_score_thresh = min(0.5, threshold)  # as upstream and PersonDetector
    torch.manual_seed(seed)
    with torch.device(device):  # ViT-H's random initialisation is much faster on a GPU
        model = instantiate(cfg.model)
    model.eval()
    predictors = list(model.roi_heads.box_predictor)
    with torch.no_grad():
        for predictor in predictors:
            predictor.bbox_pred.weight.zero_()
            predictor.bbox_pred.bias.zero_()
            predictor.cls_score.weight[0] *= PERSON_LOGIT_SCALE

    def count(bias: float) -> float:
        with torch.no_grad():
            for predictor in predictors:
                predictor.cls_score.bias[0] = bias
        return _people_per_frame(model, frames, threshold, min_size)

    low, high = -2.0e4, 2.0e4  # person logits are of the order of the scale (thousands)
    for _ in range(20):
        middle = (low + high) / 2
        low, high = (middle, high) if count(middle) < people else (low, middle)
    kept = count(high)
    _detectron2_pickle(home / ".torch" / "iopath_cache" / VITDET_PATH, model)
    return kept


def write_cache(home: Path, seed: int = 0) -> UpstreamCache:
    """Write every file upstream's track.py and our engine load; returns where."""
    cache = home / ".cache"
    _write_body_files(cache, seed)
    _write_phalp_networks(cache, seed + 10)
    _write_hmr2(cache, seed + 20)
    _write_detectors(home / ".torch" / "iopath_cache", DETECTOR_SEED)
    return UpstreamCache(home)
