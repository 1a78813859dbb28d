"""``pose-pipeline submit``: upload a video to a running service, follow it, download the
result (``pose_pipeline.client``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .cli_common import add_job_options, job_options, no_such_file

DEFAULT_URL = "http://127.0.0.1:8000"


def add_submit_command(commands: Any) -> None:
    submit = commands.add_parser("submit", help="upload a video to a running service")
    submit.add_argument("video", type=Path)
    submit.add_argument("--url", default=os.environ.get("POSE_PIPELINE_URL", DEFAULT_URL))
    submit.add_argument("--token", default=os.environ.get("POSE_PIPELINE_TOKEN"))
    submit.add_argument("--wait", action="store_true", help="follow the job and download its result")
    submit.add_argument("-o", "--output", type=Path, help="result file when --wait (.json or .npz)")
    add_job_options(submit)
    submit.set_defaults(run=_submit)


def _submit(args: argparse.Namespace) -> int:
    from .client import Client
    from .progress import ProgressBar

    options = job_options(args).model_dump(exclude_none=True)
    if not args.video.is_file():
        return no_such_file(args.video)
    with Client(args.url, args.token) as client:
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
        client.download(job.job_id, output)
        print(f"{output}: written", file=sys.stderr)
    return 0
