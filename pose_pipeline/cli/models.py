"""``pose-pipeline models check|fetch``: the blazepose engine's model files.

``fetch`` takes the two files out of the pinned mediapipe wheel on the package index (see
``pose_pipeline/engines/blazepose/models.py``) into the models directory of the
configuration (``engine.options.models_dir``, default ~/.cache/pose-pipeline/blazepose).
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

if TYPE_CHECKING:  # the engine's package imports scipy & co: only the commands that run load it
    from ..engines.blazepose.models import ModelPaths


def add_models_commands(subparsers: Any) -> None:
    models = subparsers.add_parser("models", help="check or fetch the blazepose engine's model files")
    commands = models.add_subparsers(dest="models_command", required=True)
    for name, handler, text in (("check", _check, "say whether the model files are there and right"),
                                ("fetch", _fetch, "fetch the model files from the pinned mediapipe wheel")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--models-dir", type=Path,
                         help="default: engine.options.models_dir of the configuration, else "
                              "~/.cache/pose-pipeline/blazepose")
        sub.set_defaults(run=handler)


def model_paths(settings: Settings, models_dir: Path | None = None) -> ModelPaths:
    from ..engines.blazepose.models import ModelPaths

    options: Mapping[str, Any] = settings.engine.options if settings.engine.name == "blazepose" else {}
    return ModelPaths.resolve(models_dir or options.get("models_dir"), options.get("detector_model"),
                              options.get("landmark_model"))


def ensure_models(settings: Settings, notice: Callable[[str], None]) -> None:
    """Fetch the blazepose model files when the configured engine is blazepose and they are
    missing or damaged (files an operator named explicitly are left alone)."""
    if settings.engine.name != "blazepose":
        return
    paths = model_paths(settings)
    try:
        paths.check()
    except EngineUnavailable:
        if paths.check_detector or paths.check_landmarks:
            from ..engines.blazepose.models import fetch

            notice(f"fetching the blazepose model files (mediapipe 0.10.21 wheel, Apache 2.0) into {paths.models_dir}")
            fetch(paths.models_dir)
        paths.check()


def _check(args: argparse.Namespace) -> int:
    paths = model_paths(Settings.load(args.config), args.models_dir)
    try:
        paths.check()
    except EngineUnavailable as exc:
        print(exc.message, file=sys.stderr)
        return 1
    print(f"{paths.detector}\n{paths.landmarks}\nok", file=sys.stderr)
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from ..engines.blazepose.models import fetch

    paths = model_paths(Settings.load(args.config), args.models_dir)
    for path in fetch(paths.models_dir):
        print(path)
    return 0
