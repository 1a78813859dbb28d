"""Importing upstream PHALP and HMR2.0 without their renderers.

Both packages import their visualisation modules at import time, and those import pyrender
with ``PYOPENGL_PLATFORM=egl`` forced: on a headless server without EGL the import itself
fails, although the service never renders. Before importing upstream we register inert
stand-ins for exactly those rendering modules; constructing one of their classes raises a
clear error. Nothing else of upstream is replaced.

A missing package raises ``EngineUnavailable`` naming it and how to install it.
"""

from __future__ import annotations

import importlib
import sys
import types
from dataclasses import dataclass
from typing import Any

from ...errors import EngineUnavailable

#: Rendering-only upstream modules and the names other upstream modules import from them.
RENDER_MODULES: dict[str, tuple[str, ...]] = {
    "phalp.visualize.py_renderer": ("Renderer",),
    "hmr2.utils.renderer": ("Renderer", "cam_crop_to_full", "get_light_poses", "make_rotation"),
    "hmr2.utils.mesh_renderer": ("MeshRenderer", "create_raymond_lights"),
    "hmr2.utils.skeleton_renderer": ("SkeletonRenderer",),
}

INSTALL_HINT = ("install the optional extra: pip install 'pose-pipeline[phalp]' (phalp and hmr2 from "
                "their git repositories, plus detectron2 and neural_renderer built against CUDA); "
                "the supported way is the image cluster/docker/gpu.Dockerfile. See docs/phalp-engine.md")

# Top-level distributions whose absence we name precisely (module -> what to install).
_PACKAGES = {
    "phalp": "phalp (git+https://github.com/brjathu/PHALP.git; PyPI's phalp 0.1.3 is an old, incompatible layout)",
    "hmr2": "hmr2 (git+https://github.com/shubham-goel/4D-Humans.git; not on PyPI)",
    "detectron2": "detectron2 (git+https://github.com/facebookresearch/detectron2.git, compiled)",
    "neural_renderer": "neural_renderer (git+https://github.com/shubham-goel/NMR.git, a CUDA extension)",
    "smplx": "smplx==0.1.28",
    "pytorch_lightning": "pytorch-lightning",
    "yacs": "yacs",
    "timm": "timm",
}


class _RenderingDisabled:
    """Stand-in for an upstream renderer class: the service never renders."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"{type(self).__name__}: rendering is disabled in the pose-pipeline phalp engine")


def install_render_stubs() -> None:
    """Register the rendering stand-ins unless the real modules are already imported."""
    for name, attributes in RENDER_MODULES.items():
        if name in sys.modules:
            continue
        module = types.ModuleType(name, "pose-pipeline: rendering disabled (no EGL/OpenGL needed)")
        for attribute in attributes:
            setattr(module, attribute, type(attribute, (_RenderingDisabled,), {}))
        sys.modules[name] = module


@dataclass(frozen=True)
class Upstream:
    """The upstream modules the engine uses, imported once (untyped packages: ``Any``)."""

    PHALP: Any
    FullConfig: Any
    HMR2018Predictor: Any
    Tracker: Any
    Detection: Any
    nn_matching: Any
    smpl_to_pose_camera_vector: Any
    expand_bbox_to_aspect_ratio: Any
    HMR2: Any
    hmr2_get_config: Any
    Pose_transformer_v2: Any


def missing_package_error(exc: ImportError) -> EngineUnavailable:
    name = (getattr(exc, "name", None) or "").split(".")[0]
    what = _PACKAGES.get(name, name or str(exc))
    return EngineUnavailable(f"the phalp engine needs the package {what}, which cannot be imported "
                             f"({exc}); {INSTALL_HINT}", engine="phalp", missing=name or None)


def import_upstream() -> Upstream:
    """Import upstream PHALP + HMR2.0 (tracker, models), never their renderers."""
    install_render_stubs()
    try:
        phalp_tracker_module = importlib.import_module("phalp.trackers.PHALP")
        base = importlib.import_module("phalp.configs.base")
        hmr = importlib.import_module("phalp.models.hmar.hmr")
        tracker = importlib.import_module("phalp.external.deep_sort_.tracker")
        detection = importlib.import_module("phalp.external.deep_sort_.detection")
        nn_matching = importlib.import_module("phalp.external.deep_sort_.nn_matching")
        utils = importlib.import_module("phalp.utils.utils")
        hmr2_utils = importlib.import_module("hmr2.datasets.utils")
        hmr2_models = importlib.import_module("hmr2.models")
        hmr2_configs = importlib.import_module("hmr2.configs")
        predictor = importlib.import_module("phalp.models.predictor")
    except ImportError as exc:
        raise missing_package_error(exc) from None
    except Exception as exc:  # installed but broken (e.g. torchvision built for another torch)
        raise EngineUnavailable(f"the upstream PHALP/HMR2 packages are installed but fail to import: "
                                f"{type(exc).__name__}: {exc}; {INSTALL_HINT}", engine="phalp",
                                missing=None) from None
    if not hasattr(base, "FullConfig"):  # PyPI's phalp 0.1.3: an older, incompatible package
        raise EngineUnavailable("the installed phalp package is the old PyPI release (no phalp.configs); "
                                + INSTALL_HINT, engine="phalp", missing="phalp")
    return Upstream(
        PHALP=phalp_tracker_module.PHALP, FullConfig=base.FullConfig, HMR2018Predictor=hmr.HMR2018Predictor,
        Tracker=tracker.Tracker, Detection=detection.Detection, nn_matching=nn_matching,
        smpl_to_pose_camera_vector=utils.smpl_to_pose_camera_vector,
        expand_bbox_to_aspect_ratio=hmr2_utils.expand_bbox_to_aspect_ratio,
        HMR2=hmr2_models.HMR2, hmr2_get_config=hmr2_configs.get_config,
        Pose_transformer_v2=predictor.Pose_transformer_v2,
    )


def import_neural_renderer():
    """neural_renderer (CUDA extension) for the texture sampler's depth render."""
    try:
        return importlib.import_module("neural_renderer")
    except ImportError as exc:
        raise missing_package_error(exc) from None
