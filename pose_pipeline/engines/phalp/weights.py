"""Every file the PHALP + HMR2.0 engine loads, as explicit paths, and the check made at start.

Upstream derives its cache paths from ``$HOME`` at import time and downloads whatever is
missing while the model is being built. The service does neither: each path below is
configuration (``weights_dir`` plus per-file overrides), the defaults reproduce upstream's
cache layout (so an existing ``~/.cache`` works as it is), and ``WeightPaths.check`` refuses
to start with one message that names every missing file, what it is and where it comes from.

``trusted_checkpoint_loading`` handles torch's ``weights_only=True`` default (torch >= 2.6):
upstream's checkpoints pickle configuration objects, so they can only be read with
``weights_only=False``. That is allowed for exactly the configured upstream files and for
nothing else.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, fields
from pathlib import Path
from collections.abc import Iterator

from ...errors import EngineUnavailable

# Public sources (also used by ``pose-pipeline models fetch``); taken from upstream's code:
# PHALP.cached_download_from_drive, hmr2.models.download_models, the detectron2 model zoo
# and phalp.models.backbones.resnet.
PHALP_URL = "https://www.cs.utexas.edu/~pavlakos/phalp"
HMR2_DATA_URL = "https://people.eecs.berkeley.edu/~jathushan/projects/4dhumans/hmr2_data.tar.gz"
DETECTRON2_URL = "https://dl.fbaipublicfiles.com/detectron2"
VITDET_H_PATH = "ViTDet/COCO/cascade_mask_rcnn_vitdet_h/f328730692/model_final_f05665.pkl"
REGNETY_PATH = "new_baselines/mask_rcnn_regnety_4gf_dds_FPN_400ep_LSJ/42045954/model_final_ef3a80.pkl"
RESNET50_URL = "https://download.pytorch.org/models/resnet50-19c8e357.pth"
SMPL_SOURCE = ("licence-restricted: register at https://smpl.is.tue.mpg.de/ (or https://smplify.is.tue.mpg.de/), "
               "download the neutral model (basicModel_neutral_lbs_10_207_0_v1.0.0.pkl, or SMPL_NEUTRAL.pkl) "
               "and place it here yourself; it is never downloaded for you")
HMR2_CHECKPOINT_IN_TAR = "logs/train/multiruns/hmr2/0/checkpoints/epoch=35-step=1000000.ckpt"

DETECTORS = ("vitdet", "maskrcnn")


def default_weights_dir() -> str:
    """Upstream's cache root: ``$HOME/.cache`` (holds ``phalp/``, ``4DHumans/``, ``torch/``)."""
    return str(Path.home() / ".cache")


def default_detector_cache() -> str:
    """Where detectron2 (iopath) caches model-zoo downloads."""
    return os.environ.get("FVCORE_CACHE") or str(Path.home() / ".torch" / "iopath_cache")


@dataclass(frozen=True)
class RequiredFile:
    key: str  # field name in ``WeightPaths``
    path: Path
    what: str
    source: str
    url: str | None = None  # set when ``models fetch`` may download it directly
    #: The file comes out of this archive (``models fetch`` downloads and unpacks it).
    archive: str | None = None

    def exists(self) -> bool:
        return self.path.is_file()


@dataclass(frozen=True)
class WeightPaths:
    """Absolute paths of every file the engine reads. Build with ``WeightPaths.resolve``."""

    smpl_model: Path
    hmr2_checkpoint: Path
    hmr2_model_config: Path
    hmr2_joint_regressor: Path
    hmr2_mean_params: Path
    hmar_weights: Path
    pose_predictor_weights: Path
    pose_predictor_config: Path
    pose_mean_std: Path
    texture: Path
    joint_regressor: Path
    smpl_mean_params: Path
    uv_bmap: Path
    uv_fmap: Path
    resnet50_imagenet: Path
    detector_weights: Path
    detector: str = "vitdet"

    @classmethod
    def resolve(cls, weights_dir: str | os.PathLike | None = None, detector: str = "vitdet",
                detector_cache: str | os.PathLike | None = None,
                **overrides: str | os.PathLike | None) -> WeightPaths:
        """Defaults under ``weights_dir`` in upstream's layout; ``overrides`` replace single files."""
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
        root = Path(os.path.expanduser(str(weights_dir or default_weights_dir())))
        phalp, humans = root / "phalp", root / "4DHumans"
        d2_cache = Path(os.path.expanduser(str(detector_cache or default_detector_cache()))) / "detectron2"
        checkpoint = Path(os.path.expanduser(str(overrides.pop("hmr2_checkpoint", None)
                                                   or humans / HMR2_CHECKPOINT_IN_TAR)))
        paths = dict(
            smpl_model=phalp / "3D/models/smpl/SMPL_NEUTRAL.pkl",
            hmr2_checkpoint=checkpoint,
            # upstream's load_hmr2 reads the model config two folders above the checkpoint
            hmr2_model_config=checkpoint.parent.parent / "model_config.yaml",
            hmr2_joint_regressor=humans / "data/SMPL_to_J19.pkl",
            hmr2_mean_params=humans / "data/smpl_mean_params.npz",
            hmar_weights=phalp / "weights/hmar_v2_weights.pth",
            pose_predictor_weights=phalp / "weights/pose_predictor.pth",
            pose_predictor_config=phalp / "weights/pose_predictor.yaml",
            pose_mean_std=phalp / "3D/mean_std.npy",
            texture=phalp / "3D/texture.npz",
            joint_regressor=phalp / "3D/SMPL_to_J19.pkl",
            smpl_mean_params=phalp / "3D/smpl_mean_params.npz",
            uv_bmap=phalp / "3D/bmap_256.npy",
            uv_fmap=phalp / "3D/fmap_256.npy",
            resnet50_imagenet=root / "torch/hub/checkpoints/resnet50-19c8e357.pth",
            detector_weights=d2_cache / (VITDET_H_PATH if detector == "vitdet" else REGNETY_PATH),
        )
        unknown = set(overrides) - set(paths)
        if unknown:
            raise ValueError(f"unknown weight file(s): {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(paths))}")
        for key, value in overrides.items():
            if value is not None:
                paths[key] = Path(os.path.expanduser(str(value)))
        return cls(**{k: Path(v).absolute() for k, v in paths.items()}, detector=detector)

    def required_files(self) -> list[RequiredFile]:
        """Every file, with what it is and where it comes from."""
        tar = f"hmr2_data.tar.gz ({HMR2_DATA_URL}, about 2.5 GB, unpacked into <weights_dir>/4DHumans)"
        phalp_file = lambda key, rel, what: RequiredFile(  # noqa: E731 - a table reads better
            key, getattr(self, key), what, f"PHALP's public files: {PHALP_URL}/{rel}", f"{PHALP_URL}/{rel}")
        detector_rel = VITDET_H_PATH if self.detector == "vitdet" else REGNETY_PATH
        detector_what = ("ViTDet-H Cascade Mask R-CNN (person detector, about 2.7 GB)" if self.detector == "vitdet"
                         else "Mask R-CNN RegNetY-4GF (lighter person detector, about 200 MB)")
        return [
            RequiredFile("smpl_model", self.smpl_model, "SMPL neutral body model (used by HMR2.0 and PHALP)",
                         SMPL_SOURCE),
            RequiredFile("hmr2_checkpoint", self.hmr2_checkpoint, "HMR2.0 checkpoint (Lightning .ckpt)", tar,
                         archive=HMR2_DATA_URL),
            RequiredFile("hmr2_model_config", self.hmr2_model_config, "HMR2.0 model config (model_config.yaml)",
                         tar, archive=HMR2_DATA_URL),
            RequiredFile("hmr2_joint_regressor", self.hmr2_joint_regressor, "HMR2.0 extra joint regressor", tar,
                         archive=HMR2_DATA_URL),
            RequiredFile("hmr2_mean_params", self.hmr2_mean_params, "HMR2.0 SMPL mean parameters", tar,
                         archive=HMR2_DATA_URL),
            phalp_file("hmar_weights", "weights/hmar_v2_weights.pth", "PHALP HMAR weights (appearance encoder)"),
            phalp_file("pose_predictor_weights", "weights/pose_predictor_40006.ckpt",
                       "PHALP pose predictor weights"),
            phalp_file("pose_predictor_config", "weights/config_40006.yaml", "PHALP pose predictor config"),
            phalp_file("pose_mean_std", "3D/mean_std.npy", "PHALP pose normalisation statistics"),
            phalp_file("texture", "3D/texture.npz", "PHALP SMPL texture coordinates and faces"),
            phalp_file("joint_regressor", "3D/SMPL_to_J19.pkl", "PHALP extra joint regressor"),
            phalp_file("smpl_mean_params", "3D/smpl_mean_params.npz", "PHALP SMPL mean parameters"),
            phalp_file("uv_bmap", "bmap_256.npy", "UV barycentric map (texture sampling)"),
            phalp_file("uv_fmap", "fmap_256.npy", "UV face map (texture sampling)"),
            RequiredFile("resnet50_imagenet", self.resnet50_imagenet,
                         "ResNet-50 ImageNet weights (HMAR backbone initialisation)",
                         f"torchvision model zoo: {RESNET50_URL}", RESNET50_URL),
            RequiredFile("detector_weights", self.detector_weights, detector_what,
                         f"detectron2 model zoo: {DETECTRON2_URL}/{detector_rel}", f"{DETECTRON2_URL}/{detector_rel}"),
        ]

    def missing(self) -> list[RequiredFile]:
        return [f for f in self.required_files() if not f.exists()]

    def check(self) -> None:
        """Raise ``EngineUnavailable`` naming every missing file, or return."""
        missing = self.missing()
        if missing:
            raise EngineUnavailable(missing_files_message(missing), engine="phalp",
                                    missing_files=[str(f.path) for f in missing])

    def as_dict(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}


def missing_files_message(missing: list[RequiredFile]) -> str:
    lines = [f"the phalp engine cannot start: {len(missing)} weight file(s) missing:"]
    for f in missing:
        lines.append(f"  - {f.path}\n      what: {f.what} [{f.key}]\n      from: {f.source}")
    has_free = any(f.url or f.archive for f in missing)
    if has_free:
        lines.append("Run `pose-pipeline models fetch --engine phalp` to download the freely downloadable files "
                     "(or bake them into the image: cluster/docker/gpu.Dockerfile).")
    if any(f.key == "smpl_model" for f in missing):
        lines.append("The SMPL model must be obtained by you after registering (licence); "
                     "set engine.options.smpl_model_path if it lives elsewhere.")
    return "\n".join(lines)


@contextlib.contextmanager
def trusted_checkpoint_loading(paths: list[Path]) -> Iterator[None]:
    """Within the block, ``torch.load`` of one of ``paths`` uses ``weights_only=False``.

    Upstream calls ``torch.load(path)`` (and Lightning ``torch.load(file)``) without saying
    what it trusts; under torch >= 2.6 those calls fail on upstream's checkpoints, which
    pickle config objects. We trust the configured upstream files, and only those: any other
    load keeps torch's default. Loads without ``map_location`` go to the CPU first (the
    model is moved to its device afterwards), so a checkpoint saved on a GPU loads anywhere.
    """
    import torch

    trusted = {os.path.realpath(p) for p in paths}
    original = torch.load

    def load(f, *args, **kwargs):
        name = f if isinstance(f, (str, os.PathLike)) else (getattr(f, "name", None) or getattr(f, "path", None))
        if isinstance(name, (str, os.PathLike)) and os.path.realpath(name) in trusted:
            kwargs["weights_only"] = False
            if not args and "map_location" not in kwargs:
                kwargs["map_location"] = "cpu"
        return original(f, *args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original
