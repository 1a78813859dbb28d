"""``pose-pipeline submit``: upload a video to a running service, follow it, download the
result (``pose_pipeline.client``); ``pose-pipeline jobs``: the service's jobs, newest first."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import EXIT_BAD_INPUT, EXIT_FAILURE, SUFFIX_FORMATS, add_job_options, job_options, no_such_file
from ..files import compact_json

if TYPE_CHECKING:
    from ..client import Client

DEFAULT_URL = "http://127.0.0.1:8000"


def add_submit_command(commands: Any) -> None:
    submit = commands.add_parser("submit", help="upload a video to a running service")
    submit.add_argument("video", type=Path)
    submit.add_argument("--url", default=os.environ.get("POSE_PIPELINE_URL", DEFAULT_URL))
    submit.add_argument("--token", default=os.environ.get("POSE_PIPELINE_TOKEN"))
    submit.add_argument("--wait", action="store_true", help="follow the job and download its result")
    submit.add_argument("-o", "--output", type=Path, help="result file when --wait; its suffix chooses the format: "
                        ".json, .npz, .bvh or .zip (BVH, phalp), .mp4 (the overlay video)")
    submit.add_argument("--overlay", type=Path, metavar="OUT.mp4",
                        help="with --wait: also download the video with the result drawn on it (format mp4)")
    add_job_options(submit)
    submit.set_defaults(run=_submit)

    jobs = commands.add_parser("jobs", help="list the jobs of a running service, newest first")
    jobs.add_argument("--url", default=os.environ.get("POSE_PIPELINE_URL", DEFAULT_URL))
    jobs.add_argument("--token", default=os.environ.get("POSE_PIPELINE_TOKEN"))
    jobs.add_argument("--state", help="only jobs in this state (queued, running, succeeded, failed, cancelled; "
                                      "several: comma-separated)")
    jobs.add_argument("--limit", type=int, default=20, help="jobs per page (default 20)")
    jobs.add_argument("--cursor", help="the page after the one that printed this cursor")
    jobs.add_argument("--json", action="store_true", help="one job status (JSON) per line")
    jobs.set_defaults(run=_jobs)


def _unreachable(url: str, exc: Exception) -> int:
    """A service that cannot be reached: one line, not a traceback."""
    print(f"error: cannot reach the service at {url}: {exc}", file=sys.stderr)
    return EXIT_FAILURE


def _submit(args: argparse.Namespace) -> int:
    import httpx

    from ..client import Client

    if args.overlay and not args.wait:
        print("error: invalid_option: --overlay needs --wait", file=sys.stderr)
        return EXIT_BAD_INPUT
    result_format = "json"
    if args.output is not None:
        if args.output.suffix not in SUFFIX_FORMATS:
            print(f"error: invalid_option: cannot tell the format of {args.output.name} from its suffix: use "
                  f"{', '.join(SUFFIX_FORMATS)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        result_format = SUFFIX_FORMATS[args.output.suffix]
    # The service's default formats, the one the output asks for, and the overlay video.
    formats = dict.fromkeys(["json", "npz", result_format, *(["mp4"] if args.overlay else [])])
    options = job_options(args, formats=",".join(formats)).model_dump(exclude_none=True)
    if not args.video.is_file():
        return no_such_file(args.video)
    try:
        return _submit_to(Client(args.url, args.token), args, options, result_format)
    except httpx.TransportError as exc:
        return _unreachable(args.url, exc)


def _submit_to(client: Client, args: argparse.Namespace, options: dict[str, Any], result_format: str) -> int:
    from .progress import ProgressBar

    with client:
        sending = ProgressBar(f"{args.video.name} upload", unit="MiB", rate_unit="MiB/s")
        try:
            job = client.submit(args.video, progress=lambda sent, size: sending(sent >> 20, size >> 20), **options)
        finally:
            sending.close()
        print(f"job {job.job_id}: {job.urls.self_}", file=sys.stderr)
        if not args.wait:
            print(job.job_id)
            return 0
        bar = ProgressBar(args.video.name)
        try:
            client.wait(job.job_id, progress=lambda s: bar(s.progress.frames_done, s.progress.frames_total, s.stage))
        finally:
            bar.close()
        output = args.output or Path(f"{job.job_id}.json")
        client.download(job.job_id, output, result_format)
        print(f"{output}: written", file=sys.stderr)
        if args.overlay:
            client.download(job.job_id, args.overlay, "mp4")
            print(f"{args.overlay}: written", file=sys.stderr)
        print(f"viewer: {job.urls.viewer}", file=sys.stderr)
    return 0


def _jobs(args: argparse.Namespace) -> int:
    import httpx

    from ..client import Client

    try:
        with Client(args.url, args.token) as client:
            page = client.jobs(limit=args.limit, state=args.state, cursor=args.cursor)
    except httpx.TransportError as exc:
        return _unreachable(args.url, exc)
    if args.json:
        for job in page.jobs:
            print(compact_json(job.to_json()))
    else:
        print(f"{'JOB':32}  {'STATE':9}  {'STAGE':11}  {'DONE':>5}  {'CREATED':19}  FILENAME")
        for job in page.jobs:
            created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.created_at))
            print(f"{job.job_id:32}  {job.state.value:9}  {job.stage:11}  {job.progress.fraction:>5.0%}  "
                  f"{created:19}  {job.filename}")
    if page.next_cursor:
        print(f"more: pose-pipeline jobs --cursor {page.next_cursor}", file=sys.stderr)
    return 0
