"""The ``pose-pipeline`` command: offline tracking, probing, a demo video, the service and
its client. Bad input ends with one line ``error: <code>: <message>`` and exit status 2;
a failure of the service or engine with exit status 1.

The commands that run the service on Ray (``serve``, ``demo``) belong to ``deployments``,
which registers them under the entry point group ``pose_pipeline.commands``
(pyproject.toml): the library does not import its adapters.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path

from .common import EXIT_BAD_INPUT, EXIT_FAILURE, SUFFIX_FORMATS, add_job_options, job_options, no_such_file, notice
from .. import __version__
from ..config import Settings
from ..errors import PipelineError

#: Entry points whose value is ``add_commands(subparsers)``.
COMMANDS_GROUP = "pose_pipeline.commands"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.run(args) or 0
    except PipelineError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)  # progress bars end their own line
        return EXIT_BAD_INPUT if 400 <= exc.status < 500 else EXIT_FAILURE
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pose-pipeline", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--config", help="YAML settings file (see docs/configuration.md)")
    parser.add_argument("--version", action="version", version=f"pose-pipeline {__version__}")
    commands = parser.add_subparsers(metavar="COMMAND")

    track = commands.add_parser("track", help="track the people in a video, in this process (no Ray)")
    track.add_argument("video", type=Path)
    track.add_argument("-o", "--output", type=Path, required=True,
                       help="result file (.json, .npz, or .bvh: one track's BVH, a .zip of several)")
    track.add_argument("--format", choices=["json", "npz", "bvh"], help="default: from the output's suffix")
    track.add_argument("--overlay", type=Path, metavar="OUT.mp4",
                       help="also write the video with the result drawn on it (H.264 MP4 at the processed size)")
    add_job_options(track)
    track.set_defaults(run=_track)

    probe = commands.add_parser("probe", help="print what a video is, as JSON")
    probe.add_argument("video", type=Path)
    probe.set_defaults(run=_probe)

    demo = commands.add_parser("demo-video", help="write a synthetic video of walking figures")
    demo.add_argument("output", type=Path)
    demo.add_argument("--seconds", type=float, default=10.0)
    demo.add_argument("--size", default="640x360", help="WIDTHxHEIGHT")
    demo.add_argument("--fps", type=float, default=30.0)
    demo.set_defaults(run=_demo_video)

    from .submit import add_submit_command
    from .models import add_models_commands

    add_submit_command(commands)
    add_models_commands(commands)
    for plugin in entry_points(group=COMMANDS_GROUP):
        plugin.load()(commands)
    return parser


def _track(args: argparse.Namespace) -> int:
    from ..engines.registry import EngineRegistry
    from .models import ensure_models
    from ..pipeline import track_file
    from .progress import ProgressBar
    from ..results.writers import ResultFiles

    from ..engines.registry import provides_smpl

    settings = Settings.load(args.config)
    suffix = args.output.suffix
    fmt = args.format or SUFFIX_FORMATS.get(suffix)
    if fmt not in ("json", "npz", "bvh"):  # never a result written under another format's name
        hint = f"; the video with the result drawn on it is --overlay {args.output.name}" if suffix == ".mp4" else ""
        print(f"error: invalid_option: cannot tell the result's format from {args.output.name}: use .json, .npz, "
              f".bvh or .zip, or --format{hint}", file=sys.stderr)
        return EXIT_BAD_INPUT
    options = job_options(args, formats=fmt)
    if not args.video.is_file():
        return no_such_file(args.video)
    if options.engine not in (None, settings.engine.name):  # the engine's options belong to the configured one
        settings = Settings.from_dict({**settings.model_dump(), "engine": {"name": options.engine}})
    options.require_smpl(settings.engine.name, provides_smpl(settings.engine.name, settings.engine.options))
    ensure_models(settings, notice)
    engine = EngineRegistry().create(settings.engine.name, settings.engine.options)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    stem = args.output.name.removesuffix(".zip" if fmt == "bvh" and suffix == ".zip" else f".{fmt}")
    files = ResultFiles(args.output.parent, [fmt], stem=stem)
    if args.overlay:
        args.overlay.parent.mkdir(parents=True, exist_ok=True)
    bar = ProgressBar(args.video.name)
    try:
        tracks = track_file(args.video, engine, settings, options, files, progress=bar, overlay=args.overlay)
    except BaseException:
        files.abort()
        raise
    finally:
        bar.close()
        engine.close()
    written = files.paths[fmt]
    if fmt == "bvh":  # the suffix says what it holds: one track's BVH, or a zip of several (or none)
        from ..results.export.bvh import is_zip

        if is_zip(written):
            written = written.replace(written.with_suffix(".zip"))
    print(f"{written}: {len(tracks)} tracks", file=sys.stderr)
    if args.overlay:
        print(f"{args.overlay}: written", file=sys.stderr)
    return 0




def _probe(args: argparse.Namespace) -> int:
    from ..video import probe

    if not args.video.is_file():
        return no_such_file(args.video)
    print(json.dumps(probe(args.video, Settings.load(args.config).limits).to_dict(), indent=2))
    return 0


def _demo_video(args: argparse.Namespace) -> int:
    from ..assets import synthetic

    width, _, height = args.size.partition("x")
    scene = synthetic.demo_scene(duration_s=args.seconds, size=(int(width), int(height)), fps=args.fps)
    synthetic.write_video(args.output, scene)
    print(f"{args.output}: {args.seconds:.0f} s, {args.size}, {len(scene.figures)} figures", file=sys.stderr)
    return 0
