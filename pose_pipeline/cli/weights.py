"""The phalp engine's weight files, for ``pose-pipeline models check|fetch``.

``check`` lists every required file and whether it is there (exit 1 if any is missing).
``fetch`` downloads the freely downloadable files from upstream's public URLs into the
configured locations (never the SMPL model, which is licence-restricted: the user must
register and download it). Requests never download anything: only this command does.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from ..engines.phalp.options import PhalpOptions
from ..engines.phalp.weights import RequiredFile, WeightPaths
from ..config import Settings
from ..errors import EngineUnavailable

Opener = Callable[[str], Any]  # url -> file-like response (urllib.request.urlopen)


def add_weight_arguments(group: Any) -> None:
    """The options that place the phalp engine's files (``models check|fetch``)."""
    group.add_argument("--weights-dir", help="root of the weights (default: engine.options.weights_dir "
                                             "from the configuration, else ~/.cache)")
    group.add_argument("--detector", choices=("vitdet", "maskrcnn"), help="detector whose weights to use")
    group.add_argument("--smpl-model-path")
    group.add_argument("--detector-cache", help="detectron2 cache (default $FVCORE_CACHE or ~/.torch/iopath_cache)")


def weight_paths(settings: Settings, args: argparse.Namespace) -> WeightPaths:
    """The files the phalp engine of ``settings`` reads, with the command line's overrides."""
    options: dict[str, Any] = dict(settings.engine.options) if settings.engine.name == "phalp" else {}
    for key, value in (("weights_dir", args.weights_dir), ("detector", args.detector),
                       ("smpl_model_path", args.smpl_model_path), ("detector_cache", args.detector_cache)):
        if value:
            options[key] = value
    return PhalpOptions.from_mapping(options).weight_paths()


def check_weights(paths: WeightPaths, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    for f in paths.required_files():
        print(f"[{'ok' if f.exists() else 'MISSING'}] {f.key}: {f.path}\n        {f.what}", file=out)
    try:
        paths.check()
    except EngineUnavailable as exc:
        print(exc.message, file=out)
        return 1
    print("all weight files present", file=out)
    return 0


def fetch_weights(paths: WeightPaths, out: TextIO | None = None, opener: Opener = urllib.request.urlopen) -> int:
    """Download what is missing and freely downloadable; returns 0 when all files are there."""
    out = out or sys.stdout
    missing = paths.missing()
    archives = sorted({f.archive for f in missing if f.archive})
    for archive in archives:
        members = [f for f in missing if f.archive == archive]
        _fetch_archive(archive, members, paths, out, opener)
    for f in missing:
        if f.url and not f.archive:
            _download(f.url, f.path, out, opener)
    smpl = [f for f in paths.missing() if f.key == "smpl_model"]
    if smpl:
        print(f"NOT downloaded: the SMPL model {smpl[0].path}\n  {smpl[0].source}", file=out)
    still = paths.missing()
    return 0 if not still else 1


def _download(url: str, target: Path, out: TextIO, opener: Opener) -> None:
    print(f"downloading {url}\n  -> {target}", file=out)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with opener(url) as response, open(partial, "wb") as fh:
            shutil.copyfileobj(response, fh, length=1 << 20)
    except (urllib.error.URLError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise EngineUnavailable(f"cannot download {url}: {exc}. Check the network (or a proxy), or place "
                                f"the file at {target} yourself.", url=url, path=str(target)) from None
    partial.replace(target)


def _fetch_archive(url: str, members: list[RequiredFile], paths: WeightPaths, out: TextIO, opener: Opener) -> None:
    """hmr2_data.tar.gz unpacks into <weights_dir>/4DHumans (upstream's layout)."""
    root = paths.hmr2_joint_regressor.parent.parent  # <weights_dir>/4DHumans: holds data/ and logs/
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "hmr2_data.tar.gz"
        _download(url, archive, out, opener)
        print(f"unpacking into {root}", file=out)
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
    for f in members:
        if not f.exists():
            print(f"warning: {f.path} was not in {url}", file=out)
