"""Runs upstream's own tracker on CPU: 4D-Humans' track.py path, rendering off.

    HOME=<cache home> python upstream_track.py FRAMES_DIR OUTPUT_DIR OVERRIDES_JSON

``HMR2_4dhuman(cfg).track()`` from track.py itself (read from the unpacked sources,
``$UPSTREAM_TRACK_PY`` or ``<venv>/src/4D-Humans/track.py``), with track.py's config
(``Human4DConfig``), ``render.enable=False`` and the given overrides. Upstream reads its
weights from ``$HOME/.cache`` (phalp.configs.base) and builds everything as track.py does,
renderer included. What this harness changes, and only so that it runs on a CPU:
- ``.cuda()`` is the identity (upstream hard-codes it: detectors, crops, pose predictor,
  texture distance), ``cfg.device`` is ``cpu`` and so is detectron2's default device (of
  the X101 predictor PHALP builds from a yacs config);
- neural_renderer's compiled rasterizer is the tests' CPU stand-in;
- torch loads upstream's checkpoints with ``weights_only=False`` (they pickle config
  objects; upstream predates torch's default);
- the pose predictor's weights are loaded in full after PHALP built it: upstream's loader
  rewrites every "encoder." in the key names, so ``pose_shape_encoder`` never loads and
  keeps a random initialisation that depends on the process's RNG history. Our engine loads
  them in full (a fix); without this, no two processes would agree.
Prints one JSON line: the path of upstream's result pickle, and (for bench/) seconds spent
in upstream's per-frame steps: detect (``get_detections``), hmr2 (``get_human_features``:
crops, HMR2, texture, appearance) and associate (``tracker.predict`` + ``update``), plus
start-up (building PHALP) and track (all of ``track()``, JPEG-free here).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phalp_fixtures.rasterizer import install as install_rasterizer  # noqa: E402


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
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    install_rasterizer()
    import torch
    from omegaconf import OmegaConf

    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    from detectron2.config import defaults
    defaults._C.MODEL.DEVICE = "cpu"
    spec = importlib.util.spec_from_file_location("track", track_py())
    track = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(track)

    cfg = OmegaConf.structured(track.Human4DConfig)
    cfg.video.source, cfg.video.output_dir = frames, output
    cfg.render.enable = False
    cfg.device = "cpu"
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    seconds: dict[str, float] = defaultdict(float)
    started = time.perf_counter()
    tracker = track.HMR2_4dhuman(cfg)
    load_predictor_in_full(tracker.pose_predictor, cfg.pose_predictor.weights_path)
    seconds["startup"] = time.perf_counter() - started
    timed(tracker, "get_detections", "detect", seconds)
    timed(tracker, "get_human_features", "hmr2", seconds)
    setup_deepsort = tracker.setup_deepsort

    def setup_timed_deepsort():
        setup_deepsort()
        timed(tracker.tracker, "predict", "associate", seconds)
        timed(tracker.tracker, "update", "associate", seconds)

    tracker.setup_deepsort = setup_timed_deepsort
    started = time.perf_counter()
    result = tracker.track()
    seconds["track"] = time.perf_counter() - started
    if result is None:  # track() prints any exception and returns None
        sys.exit("upstream PHALP.track() returned None (it caught an exception, printed above)")
    print(json.dumps({"pkl": str(result[1]), "seconds": seconds}))


def timed(owner, method: str, stage: str, seconds: dict[str, float]) -> None:
    """Count the time spent in ``owner.method`` towards ``stage`` (instance attribute only)."""
    original = getattr(owner, method)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[stage] += time.perf_counter() - started

    setattr(owner, method, wrapper)


if __name__ == "__main__":
    main()
