"""The ``pose-pipeline`` command: offline tracking, probing, a demo video, the service and
its client. Bad input ends with one line ``error: <code>: <message>`` and exit status 2;
a failure of the service or engine with exit status 1."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import Settings
from .errors import PipelineError

EXIT_BAD_INPUT, EXIT_FAILURE = 2, 1


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
    parser = argparse.ArgumentParser(prog="pose-pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="YAML settings file (see docs/configuration.md)")
    commands = parser.add_subparsers(metavar="COMMAND")

    track = commands.add_parser("track", help="track the people in a video, in this process (no Ray)")
    track.add_argument("video", type=Path)
    track.add_argument("-o", "--output", type=Path, required=True, help="result file (.json or .npz)")
    track.add_argument("--format", choices=["json", "npz"], help="default: from the output's suffix")
    _add_job_options(track)
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

    from . import service_cli
    from .models_cli import add_models_commands
    service_cli.add_commands(commands, _add_job_options)
    add_models_commands(commands)
    try:
        from .weights_cli import add_weights_commands
    except ImportError:  # the PHALP engine's tools are optional
        pass
    else:
        add_weights_commands(commands)
    return parser


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", help="engine name (default: from the settings)")
    parser.add_argument("--fps", type=float, help="sample the video at this rate")
    parser.add_argument("--max-side", type=int, help="downscale frames to this longest side")
    parser.add_argument("--start", type=float, dest="start_s", help="start time in seconds")
    parser.add_argument("--end", type=float, dest="end_s", help="end time in seconds")


def job_options(args: argparse.Namespace, **extra):
    from .pipeline import JobOptions

    values = {k: getattr(args, k) for k in ("engine", "fps", "max_side", "start_s", "end_s")
              if getattr(args, k, None) is not None}
    return JobOptions.parse({**values, **extra})


def _track(args: argparse.Namespace) -> int:
    from .engines import EngineRegistry
    from .models_cli import ensure_models
    from .pipeline import track_file
    from .progress import ProgressBar
    from .serialize import ResultFiles

    settings = Settings.load(args.config)
    fmt = args.format or ("npz" if args.output.suffix == ".npz" else "json")
    options = job_options(args, formats=fmt)
    if not args.video.is_file():
        print(f"error: not_found: no such file: {args.video}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if options.engine not in (None, settings.engine.name):  # the engine's options belong to the configured one
        settings = Settings.from_dict({**settings.model_dump(), "engine": {"name": options.engine}})
    ensure_models(settings, notice)
    engine = EngineRegistry().create(settings.engine.name, settings.engine.options)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    files = ResultFiles(args.output.parent, [fmt], stem=args.output.name.removesuffix(f".{fmt}"))
    bar = ProgressBar(args.video.name)
    try:
        tracks = track_file(args.video, engine, settings, options, files, progress=bar)
    except BaseException:
        files.abort()
        raise
    finally:
        bar.close()
        engine.close()
    print(f"{args.output}: {len(tracks)} tracks", file=sys.stderr)
    return 0


def notice(message: str) -> None:
    print(message, file=sys.stderr)


def _probe(args: argparse.Namespace) -> int:
    from .video import probe

    if not args.video.is_file():
        print(f"error: not_found: no such file: {args.video}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(probe(args.video, Settings.load(args.config).limits).to_dict(), indent=2))
    return 0


def _demo_video(args: argparse.Namespace) -> int:
    from . import synthetic

    width, _, height = args.size.partition("x")
    scene = synthetic.demo_scene(duration_s=args.seconds, size=(int(width), int(height)), fps=args.fps)
    synthetic.write_video(args.output, scene)
    print(f"{args.output}: {args.seconds:.0f} s, {args.size}, {len(scene.figures)} figures", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
