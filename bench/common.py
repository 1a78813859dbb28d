"""Shared helpers of the benchmarks: generated videos (cached under bench/out/), a local
service on a given port, peak RSS of Ray worker processes by name, the project's metrics,
and the output (a table on stdout, JSON under bench/out/).

Every benchmark measures its baseline in the same run, interleaved with the thing measured
(A, B, A, B, ...), and reports medians and ratios: the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
VIDEOS = OUT / "videos"
if str(ROOT) not in sys.path:  # run as `python bench/x.py` from the repository root
    sys.path.insert(0, str(ROOT))

#: Serve HTTP ports the benchmarks may use (never 8000: people run the service there).
PORT_RANGE = range(8700, 8800)


# --- videos --------------------------------------------------------------------------------


def video(duration_s: float, size: tuple[int, int], fps: float = 30.0, *, crf: int = 23,
          preset: str = "veryfast", people: int = 3) -> Path:
    """A synthetic H.264 video of walking figures, generated once and kept under bench/out/."""
    from pose_pipeline.assets import synthetic

    width, height = size
    path = VIDEOS / f"walk_{width}x{height}_{fps:g}fps_{duration_s:g}s_crf{crf}_{people}p.mp4"
    if path.exists():
        return path
    VIDEOS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log(f"generating {path.name} ...")
    scene = synthetic.demo_scene(duration_s=duration_s, size=size, fps=fps, people=people)
    partial = path.with_name(path.name + f".{os.getpid()}.partial.mp4")
    try:
        synthetic.write_video(partial, scene, crf=crf, preset=preset)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    log(f"generated {path.name} ({path.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - started:.1f} s")
    return path


def clip_montage(name: str, source: Path, cells: list[tuple[int, int, int, int]], size: tuple[int, int],
                 loops: int = 1) -> Path:
    """A video of ``size`` showing a real clip (one person) in each cell (x, y, w, h), scaled
    by FFmpeg, kept under bench/out/videos/. ``loops`` > 1 plays the clip forwards and
    backwards in turn, for longer videos without a cut."""
    import av
    import numpy as np

    path = VIDEOS / f"{name}.mp4"
    if path.exists():
        return path
    VIDEOS.mkdir(parents=True, exist_ok=True)
    with av.open(str(source)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    sequence = [frame for k in range(loops) for frame in (frames if k % 2 == 0 else frames[::-1])]
    partial = path.with_name(path.name + f".{os.getpid()}.partial.mp4")
    width, height = size
    with av.open(str(partial), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"preset": "veryfast", "crf": "20"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in sequence:
            canvas = np.full((height, width, 3), 96, dtype=np.uint8)
            for x, y, w, h in cells:
                cell = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(w, h).to_ndarray(format="rgb24")
                canvas[y:y + h, x:x + w] = cell
            out.mux(stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
        out.mux(stream.encode())
    os.replace(partial, path)
    return path


# --- the local service -----------------------------------------------------------------------


def free_port(candidates: Iterable[int] = PORT_RANGE) -> int:
    """A port of ``candidates`` nobody listens on (on the loopback address)."""
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {candidates}")


def _cpu_config() -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(application args, deployment options by name) of serve_config.cpu.yaml."""
    import yaml

    application = yaml.safe_load((ROOT / "serve_config.cpu.yaml").read_text())["applications"][0]
    options = {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in application.get("deployments", [])}
    return application.get("args") or {}, options


def service_settings(store_root: Path, **overrides: Any) -> dict[str, Any]:
    """The embedded CPU default's settings (serve_config.cpu.yaml) with ``overrides`` merged
    in by section (e.g. ``jobs={"max_running": 4}``), the store under ``store_root``. The
    engine is motion unless overridden: the synthetic videos of ``video`` are its kind of
    input (the default engine, blazepose, finds no people in them)."""
    args, _ = _cpu_config()
    settings = json.loads(json.dumps(args.get("settings") or {}))
    settings.setdefault("store", {})["root"] = str(store_root)
    settings["engine"] = {"name": "motion"}
    for section, values in overrides.items():
        settings.setdefault(section, {}).update(values)
    return settings


def deployment_options(**overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """serve_config.cpu.yaml's deployment options, with ``overrides`` by deployment name."""
    _, options = _cpu_config()
    for name, values in overrides.items():
        merged = dict(options.get(name, {}))
        for key, value in values.items():
            merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
        options[name] = merged
    return options


class LocalService:
    """A local Ray cluster of its own (``address="local"``: never someone else's) with the
    application on ``port``; ``with LocalService(...) as svc:`` starts it and waits until
    /readyz answers; leaving shuts Serve and Ray down and removes the store.

    ``metrics_port``: Ray's metrics export port (scrape with ``svc.metrics()``), reported
    every second instead of every ten.
    """

    def __init__(self, port: int | None = None, *, settings: dict[str, Any] | None = None,
                 deployments: dict[str, dict[str, Any]] | None = None, metrics: bool = False,
                 num_cpus: int | None = None, ready_timeout_s: float = 180.0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._store = Path(tempfile.mkdtemp(prefix="store-", dir=_mkdir(OUT)))
        self.settings = settings if settings is not None else service_settings(self._store)
        self.settings.setdefault("store", {}).setdefault("root", str(self._store))
        self.deployments = deployments if deployments is not None else deployment_options()
        self.metrics_port = free_port(range(8780, 8800)) if metrics else None
        self.num_cpus = num_cpus or os.cpu_count()
        self.ready_timeout_s = ready_timeout_s
        self.start_s = 0.0

    def __enter__(self) -> LocalService:
        import ray
        from ray import serve

        from deployments.app import compose
        from deployments.cli import LOCAL_CLUSTER_ENV

        for name, value in LOCAL_CLUSTER_ENV.items():  # as `pose-pipeline serve` runs it
            os.environ.setdefault(name, value)
        started = time.perf_counter()
        init: dict[str, Any] = dict(address="local", num_cpus=self.num_cpus, include_dashboard=False,
                                    logging_level="WARNING", log_to_driver=False,
                                    runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
        if self.metrics_port:
            init.update(_metrics_export_port=self.metrics_port,
                        _system_config={"metrics_report_interval_ms": 1000})
        ray.init(**init)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": self.port})
            serve.run(compose({"settings": self.settings}, self.deployments), name="pose",
                      route_prefix="/", blocking=False)
            self._wait_ready()
        except BaseException:
            self._shutdown()
            raise
        self.start_s = time.perf_counter() - started
        return self

    def __exit__(self, *exc) -> None:
        self._shutdown()

    def _shutdown(self) -> None:
        import ray
        from ray import serve

        with contextlib.suppress(Exception):
            serve.shutdown()
        with contextlib.suppress(Exception):
            ray.shutdown()
        shutil.rmtree(self._store, ignore_errors=True)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        last = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=10) as response:
                    if response.status == 200:
                        return
            except Exception as exc:  # not up yet
                last = str(exc)
            time.sleep(0.5)
        raise RuntimeError(f"the service on {self.url} was not ready after {self.ready_timeout_s:.0f} s: {last}")

    def client(self, timeout_s: float = 600.0):
        from pose_pipeline.client import Client

        return Client(self.url, timeout_s=timeout_s)

    def run_job(self, path: Path, **options: Any) -> dict[str, Any]:
        """Upload, wait, download the JSON result: the wall time a client sees, in parts."""
        timings: dict[str, float] = {}
        with self.client() as client:
            started = time.perf_counter()
            job = client.submit(path, **options)
            timings["submit_s"] = time.perf_counter() - started
            status = _wait(client, job.job_id)
            timings["until_done_s"] = time.perf_counter() - started
            with tempfile.TemporaryDirectory(dir=_mkdir(OUT)) as tmp:
                client.download(job.job_id, Path(tmp) / "result.json")
            timings["total_s"] = time.perf_counter() - started
        return {**timings, "job_id": job.job_id, "frames": status.progress.frames_done,
                "server_running_s": status.timings.running_s, "server_queued_s": status.timings.queued_s}

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # noqa: D401
        """The Prometheus samples on Ray's metrics export port: {(name, labels): value}."""
        if not self.metrics_port:
            raise RuntimeError("start the service with metrics=True")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as response:
            return parse_prometheus(response.read().decode())

    def processes(self) -> dict[str, list[int]]:
        """Pids of this cluster's Serve processes, by name (replicas by deployment name)."""
        return serve_processes()


def _wait(client, job_id: str, poll_s: float = 0.25):
    """Poll the job's status (a ``JobView``) until it ends (polling rather than the event
    stream: a stream cut by a restarting ingress would end the benchmark); raise if it failed."""
    while True:
        status = client.status(job_id)
        if status.state.terminal:
            if status.state != "succeeded":
                raise RuntimeError(f"job {job_id} {status.state.value}: {status.error}")
            return status
        time.sleep(poll_s)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- metrics ---------------------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match:
            labels = tuple(sorted(_LABEL.findall(match.group(3) or "")))
            with contextlib.suppress(ValueError):
                samples[(match.group(1), labels)] = float(match.group(4))
    return samples


def metric_sum(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels`` (over replicas)."""
    total = 0.0
    for (sample_name, sample_labels), value in samples.items():
        if sample_name == name and all((k, v) in sample_labels for k, v in labels.items()):
            total += value
    return total


def wait_metric(svc: LocalService, name: str, at_least: float, timeout_s: float = 15.0, **labels: str) -> dict:
    """Scrape until ``name`` reaches ``at_least`` (Ray reports metrics with a delay)."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = svc.metrics()
        if metric_sum(samples, name, **labels) >= at_least or time.monotonic() > deadline:
            return samples
        time.sleep(0.5)


# --- processes and memory --------------------------------------------------------------------

# The title gains the running method's name: "ray::ServeReplica:pose:Ingress.handle_request".
_REPLICA = re.compile(r"ray::ServeReplica:([^:\s]+):([^\s.]+)")


def _own_descendants() -> list:
    import psutil

    return psutil.Process(os.getpid()).children(recursive=True)


def serve_processes() -> dict[str, list[int]]:
    """This process's Ray workers that are Serve replicas ("Ingress", "Tracking", ...), the
    Serve controller and proxy. Only descendants of this process: other people's clusters
    on the same machine have processes of the same names."""
    import psutil

    found: dict[str, list[int]] = {}
    for proc in _own_descendants():
        try:
            title = " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        match = _REPLICA.search(title)
        if match:
            name = match.group(2)
        elif "ServeController" in title:
            name = "ServeController"
        elif "ProxyActor" in title:
            name = "ProxyActor"
        else:
            continue
        found.setdefault(name, []).append(proc.pid)
    return found


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) used so far by this process and its descendants, by name:
    Serve's processes as in ``serve_processes``, Ray's own by executable ("raylet", "gcs_server",
    ...); "bench" is this process. Differences of two calls show where a run's CPU went."""
    import psutil

    names = {pid: name for name, pids in serve_processes().items() for pid in pids}
    used: dict[str, float] = {}
    for proc in [psutil.Process(os.getpid()), *_own_descendants()]:
        try:
            times = proc.cpu_times()
            name = "bench" if proc.pid == os.getpid() else names.get(proc.pid) or proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        used[name] = used.get(name, 0.0) + times.user + times.system
    return used


def rss_bytes(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


def rss_parts(pid: int) -> dict[str, int]:
    """RssAnon (private memory), RssFile and RssShmem of a process, from /proc/PID/status.
    A Ray worker's RSS counts the pages of the shared object store it has touched
    (RssShmem): memory of the node's object store, not of the process."""
    parts = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("RssAnon:", "RssFile:", "RssShmem:")):
                key, value = line.split()[:2]
                parts[key.rstrip(":")] = int(value) * 1024
    return parts


def peak_rss_bytes(pid: int) -> int:
    """The kernel's high-water mark of the process's resident set (VmHWM): its true peak
    since it started, not a sample."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for {pid}")


class RssSampler:
    """Samples the RSS of the given pids every ``period_s`` in a thread; ``peak`` per pid."""

    def __init__(self, pids: dict[str, list[int]], period_s: float = 0.1) -> None:
        self.pids = pids
        self.period_s = period_s
        self.peak: dict[int, int] = {}
        self.first: dict[int, int] = {}
        self.first_anon: dict[int, int] = {}
        self.peak_anon: dict[int, int] = {}  # private memory (RssAnon)
        self.peak_shmem: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self) -> None:
        for pids in self.pids.values():
            for pid in pids:
                with contextlib.suppress(Exception):
                    rss = rss_bytes(pid)
                    self.first.setdefault(pid, rss)
                    self.peak[pid] = max(self.peak.get(pid, 0), rss)
                    parts = rss_parts(pid)
                    self.first_anon.setdefault(pid, parts.get("RssAnon", 0))
                    self.peak_anon[pid] = max(self.peak_anon.get(pid, 0), parts.get("RssAnon", 0))
                    self.peak_shmem[pid] = max(self.peak_shmem.get(pid, 0), parts.get("RssShmem", 0))

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self._sample()

    def by_name(self, which: dict[int, int] | None = None) -> dict[str, int]:
        """The largest value among each name's processes."""
        which = self.peak if which is None else which
        return {name: max((which.get(pid, 0) for pid in pids), default=0) for name, pids in self.pids.items()}


# --- measurement and output ------------------------------------------------------------------


def parse_args(doc: str, quick: str, default_repeats: int = 2, port: bool = True,
               extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """The options every benchmark takes: ``--quick`` (what it runs: ``quick``), ``--repeats``
    (filled in: ``default_repeats``, or 1 when quick) and, for those that start a service,
    ``--port``; ``extra`` adds a benchmark's own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--repeats", type=int, help=f"rounds (default {default_repeats}; quick: 1)")
    if port:
        parser.add_argument("--port", type=int, help="Serve HTTP port (default: a free one in 8700-8799)")
    if extra:
        extra(parser)
    args = parser.parse_args()
    args.repeats = args.repeats or (1 if args.quick else default_repeats)
    return args


def interleaved(runs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[Any]]:
    """Call each of ``runs`` in turn, ``repeats`` rounds (A, B, A, B, ...)."""
    results: dict[str, list[Any]] = {name: [] for name in runs}
    for round_ in range(repeats):
        for name, run in runs.items():
            log(f"round {round_ + 1}/{repeats}: {name}")
            results[name].append(run())
    return results


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    load = os.getloadavg()
    versions = {}
    for module in ("av", "numpy", "ray", "cv2"):
        with contextlib.suppress(Exception):
            versions[module] = __import__(module).__version__
    return {"nproc": os.cpu_count(), "cpu": model, "ram_gib": round(mem / 2**30, 1),
            "python": platform.python_version(), "load_avg_at_start": [round(x, 2) for x in load],
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "versions": versions}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A plain text table (also valid Markdown)."""
    if not rows:
        return "(no rows)"
    columns = columns or list(rows[0])
    cells = [[_fmt(row.get(col, "")) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    lines = ["| " + " | ".join(col.ljust(w) for col, w in zip(columns, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def write_result(name: str, quick: bool, result: dict[str, Any]) -> Path:
    """bench/out/<name>[-quick].json with the machine description."""
    path = _mkdir(OUT) / f"{name}{'-quick' if quick else ''}.json"
    payload = {"benchmark": name, "quick": quick, "machine": machine(), **result}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    log(f"wrote {path.relative_to(ROOT)}")
    return path


def mib(n: float) -> float:
    return n / 2**20


def run_cli_track(path: Path, output: Path, config: Path, *extra: str) -> float:
    """``pose-pipeline track`` as a user runs it (a fresh process); returns its wall time."""
    command = [sys.executable, "-m", "pose_pipeline.cli", "--config", str(config), "track", str(path),
               "-o", str(output), *extra]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - started


@contextlib.contextmanager
def cli_config(settings: dict[str, Any]) -> Iterator[Path]:
    """A settings YAML for ``pose-pipeline --config`` (the same settings the service runs)."""
    import yaml

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=_mkdir(OUT), delete=False) as fh:
        yaml.safe_dump(settings, fh)
    try:
        yield Path(fh.name)
    finally:
        os.unlink(fh.name)
