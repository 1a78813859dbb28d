"""``pose-pipeline models check|fetch``: the model files of the configured engine (or
``--engine``), whichever it is.

- blazepose: ``fetch`` takes the three files out of the pinned mediapipe wheel on the package
  index and the pinned ``@mediapipe/objectron`` npm package
  (``pose_pipeline/engines/blazepose/models.py``) into the models directory of the
  configuration (``engine.options.models_dir``, default ~/.cache/pose-pipeline/blazepose).
- phalp: its weight files (``cli/weights.py``): ``fetch`` downloads the freely downloadable
  ones (never the SMPL model, which is licence-restricted).
- motion: none.

``check`` says whether they are there and right (exit 1 if not).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..errors import EngineUnavailable
from .weights import add_weight_arguments, check_weights, fetch_weights, weight_paths

if TYPE_CHECKING:  # the engine's package imports scipy & co: only the commands that run load it
    from ..engines.blazepose.models import ModelPaths


def add_models_commands(subparsers: Any) -> None:
    models = subparsers.add_parser("models", help="check or fetch the configured engine's model files")
    commands = models.add_subparsers(dest="models_command", required=True)
    for name, text in (("check", "say whether the model files are there and right"),
                       ("fetch", "fetch the model files (blazepose: from the pinned mediapipe wheel and npm "
                                 "package; phalp: the freely downloadable weights)")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--engine", help="the engine whose files (default: the configured one)")
        blazepose = sub.add_argument_group("blazepose")
        blazepose.add_argument("--models-dir", type=Path,
                               help="default: engine.options.models_dir of the configuration, else "
                                    "~/.cache/pose-pipeline/blazepose")
        add_weight_arguments(sub.add_argument_group("phalp"))
        sub.set_defaults(run=_run, action=name)


def _run(args: argparse.Namespace) -> int:
    settings = Settings.load(args.config)
    engine = args.engine or settings.engine.name
    if engine == "blazepose":
        return (_check if args.action == "check" else _fetch)(settings, args.models_dir)
    if engine == "phalp":
        paths = weight_paths(settings, args)
        return check_weights(paths) if args.action == "check" else fetch_weights(paths)
    print(f"the {engine} engine needs no model files", file=sys.stderr)
    return 0


def model_paths(settings: Settings, models_dir: Path | None = None) -> ModelPaths:
    from ..engines.blazepose.models import ModelPaths

    options: Mapping[str, Any] = settings.engine.options if settings.engine.name == "blazepose" else {}
    return ModelPaths.resolve(models_dir or options.get("models_dir"), options.get("detector_model"),
                              options.get("face_detector_model"), options.get("landmark_model"))


def ensure_models(settings: Settings, notice: Callable[[str], None]) -> None:
    """Fetch the blazepose model files when the configured engine is blazepose and they are
    missing or damaged (files an operator named explicitly are left alone)."""
    if settings.engine.name != "blazepose":
        return
    paths = model_paths(settings)
    try:
        paths.check()
    except EngineUnavailable:
        if any(checked for _, _, checked in paths.files()):
            from ..engines.blazepose.models import fetch

            notice("fetching the blazepose model files (Apache 2.0: the mediapipe 0.10.21 wheel, the npm package "
                   f"@mediapipe/objectron) into {paths.models_dir}")
            fetch(paths.models_dir)
        paths.check()


def _check(settings: Settings, models_dir: Path | None) -> int:
    paths = model_paths(settings, models_dir)
    try:
        paths.check()
    except EngineUnavailable as exc:
        print(exc.message, file=sys.stderr)
        return 1
    print("".join(f"{path}\n" for path, _, _ in paths.files()) + "ok", file=sys.stderr)
    return 0


def _fetch(settings: Settings, models_dir: Path | None) -> int:
    from ..engines.blazepose.models import fetch

    paths = model_paths(settings, models_dir)
    for path in fetch(paths.models_dir):
        print(path)
    return 0
