"""What the ``pose-pipeline`` commands share: job options as arguments, exit statuses, and
notices on stderr."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..options import JobOptions

EXIT_BAD_INPUT, EXIT_FAILURE = 2, 1
#: The result format an output file's suffix asks for (``track -o``, ``submit --wait -o``).
SUFFIX_FORMATS = {".json": "json", ".npz": "npz", ".bvh": "bvh", ".zip": "bvh", ".mp4": "mp4"}
_JOB_OPTIONS = ("engine", "fps", "max_side", "start_s", "end_s", "smooth", "include")


def add_job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", help="engine name (default: from the settings)")
    parser.add_argument("--fps", type=float, help="sample the video at this rate")
    parser.add_argument("--max-side", type=int, help="downscale frames to this longest side")
    parser.add_argument("--start", type=float, dest="start_s", help="start time in seconds")
    parser.add_argument("--end", type=float, dest="end_s", help="end time in seconds")
    parser.add_argument("--smooth", metavar="PRESET", help="temporal smoothing: off, light, medium, strong, or a "
                        "JSON object of parameters (docs/result-schema.md, Temporal smoothing)")
    parser.add_argument("--include", metavar="WHAT", help="optional outputs, comma-separated: vertices (SMPL mesh, "
                        "engines with SMPL), json_vertices (in the JSON too)")


def job_options(args: argparse.Namespace, **extra: Any) -> JobOptions:
    values = {k: getattr(args, k) for k in _JOB_OPTIONS if getattr(args, k, None) is not None}
    return JobOptions.parse({**values, **extra})


def notice(message: str) -> None:
    print(message, file=sys.stderr)


def no_such_file(path: object) -> int:
    print(f"error: not_found: no such file: {path}", file=sys.stderr)
    return EXIT_BAD_INPUT
