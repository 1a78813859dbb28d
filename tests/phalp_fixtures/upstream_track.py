"""Runs upstream's own tracker: 4D-Humans' track.py path, rendering off, on the CPU or a GPU.

    HOME=<cache home> python upstream_track.py FRAMES_DIR OUTPUT_DIR OVERRIDES_JSON [cpu|cuda]

``HMR2_4dhuman(cfg).track()`` from track.py itself (read from the unpacked sources,
``$UPSTREAM_TRACK_PY`` or ``<venv>/src/4D-Humans/track.py``), with track.py's config
(``Human4DConfig``), ``render.enable=False`` and the given overrides. Upstream reads its
weights from ``$HOME/.cache`` (phalp.configs.base) and builds everything as track.py does,
renderer included (on the CPU). What this harness changes, and only so that it runs:
- on the CPU (the default): ``.cuda()`` is the identity (upstream hard-codes it: detectors, crops, pose predictor,
  texture distance), ``cfg.device`` is ``cpu`` and so is detectron2's default device (of
  the X101 predictor PHALP builds from a yacs config);
- neural_renderer's compiled rasterizer is the tests' CPU stand-in where it is not compiled;
- on CUDA (the GPU benchmark's machine has no EGL): upstream's renderer modules are the
  engine's inert stand-ins and PHALP builds no Visualizer (rendering is off: never called);
- torch loads upstream's checkpoints with ``weights_only=False`` (they pickle config
  objects; upstream predates torch's default);
- the pose predictor's weights are loaded in full after PHALP built it: upstream's loader
  rewrites every "encoder." in the key names, so ``pose_shape_encoder`` never loads and
  keeps a random initialisation that depends on the process's RNG history. Our engine loads
  them in full (a fix); without this, no two processes would agree.
Prints one JSON line: the path of upstream's result pickle, and (for bench/) seconds spent
in upstream's per-frame steps: detect (``get_detections``), hmr2 (``get_human_features``:
crops, HMR2, texture, appearance) and associate (``tracker.predict`` + ``update``), plus
start-up (building PHALP) and track (all of ``track()``, JPEG-free here); on CUDA also the
peak memory torch's allocator held in each of those stages (``peak_bytes``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"  # before torch is imported
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pose_pipeline.engines.gpu import StageMeter  # noqa: E402
from phalp_fixtures.rasterizer import install_unless_compiled  # noqa: E402


def track_py() -> Path:
    return Path(os.environ.get("UPSTREAM_TRACK_PY") or Path(sys.prefix) / "src/4D-Humans/track.py")


def load_predictor_in_full(predictor, path: str) -> None:
    import torch

    state = torch.load(path, map_location="cpu")["state_dict"]
    prefix = "encoder."
    missing, unexpected = predictor.encoder.load_state_dict(
        {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)
    assert not missing and not unexpected


def main() -> None:
    frames, output, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    device = sys.argv[4] if len(sys.argv) > 4 else "cpu"
    install_unless_compiled()
    import torch
    from omegaconf import OmegaConf

    if device == "cpu":
        torch.Tensor.cuda = lambda self, *args, **kwargs: self
        torch.nn.Module.cuda = lambda self, *args, **kwargs: self
        from detectron2.config import defaults
        defaults._C.MODEL.DEVICE = "cpu"
    else:
        from pose_pipeline.engines.phalp.upstream import install_render_stubs

        install_render_stubs()
        from phalp.trackers.PHALP import PHALP

        PHALP.setup_visualizer = lambda self: None
    spec = importlib.util.spec_from_file_location("track", track_py())
    track = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(track)

    cfg = OmegaConf.structured(track.Human4DConfig)
    cfg.video.source, cfg.video.output_dir = frames, output
    cfg.render.enable = False
    cfg.device = device
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    meter = StageMeter(torch.device(device), peak_memory=True)
    with meter("startup"):
        tracker = track.HMR2_4dhuman(cfg)
        load_predictor_in_full(tracker.pose_predictor, cfg.pose_predictor.weights_path)
    timed(tracker, "get_detections", "detect", meter)
    timed(tracker, "get_human_features", "hmr2", meter)
    setup_deepsort = tracker.setup_deepsort

    def setup_timed_deepsort():
        setup_deepsort()
        timed(tracker.tracker, "predict", "associate", meter)
        timed(tracker.tracker, "update", "associate", meter)

    tracker.setup_deepsort = setup_timed_deepsort
    started = time.perf_counter()
    result = tracker.track()
    meter.seconds["track"] = time.perf_counter() - started
    if result is None:  # track() prints any exception and returns None
        sys.exit("upstream PHALP.track() returned None (it caught an exception, printed above)")
    print(json.dumps({"pkl": str(result[1]), "seconds": meter.seconds, "peak_bytes": meter.peak_bytes}))


def timed(owner, method: str, stage: str, meter: StageMeter) -> None:
    """Count ``owner.method``'s time and peak memory towards ``stage`` (instance attribute only)."""
    original = getattr(owner, method)

    def wrapper(*args, **kwargs):
        with meter(stage):
            return original(*args, **kwargs)

    setattr(owner, method, wrapper)


if __name__ == "__main__":
    main()
