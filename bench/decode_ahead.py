"""Decoding ahead on and off (``jobs.decode_ahead``): throughput for 1, 2 and 4 jobs at once.

The setting is the job runner's, so each side needs a cluster of its own: a fresh local
cluster per side and round, alternated (on, off, on, off), each with the concurrency
benchmark's deployments (Tracking: 2 replicas of 0.5 CPU; jobs.max_running 4) and a warm-up
of 4 jobs at once: the first time a cluster holds that many chunks, the Decode replica's copies
into the object store touch fresh pages (page faults; decoding ahead holds more chunks, so it
paid more), a cost a running service has paid long before.

Reports video-seconds per wall second, medians, and on / off; and where the CPU went: CPU
seconds per video-second of each process (Serve's replicas by deployment, Ray's own processes
by name), medians, at each level.

    python bench/decode_ahead.py [--quick] [--repeats N] [--port 87xx]
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import common

LEVELS = (1, 2, 4)


def one_side(decode_ahead: bool, path, duration_s: float, port: int | None) -> dict[int, dict]:
    """Video-seconds per wall second, and CPU seconds per video-second by process, at each
    level, on a fresh cluster."""
    service = common.LocalService(port, deployments=common.deployment_options(
        Tracking={"num_replicas": 2, "ray_actor_options": {"num_cpus": 0.5}}))
    service.settings["jobs"].update(max_running=max(LEVELS), decode_ahead=decode_ahead)
    levels = {}
    with service as svc:
        _at_once(svc, path, max(LEVELS))  # warm-up
        for jobs in LEVELS:
            cpu_before, started = common.cpu_seconds(), time.perf_counter()
            _at_once(svc, path, jobs)
            wall_s, cpu_after = time.perf_counter() - started, common.cpu_seconds()
            video_s = jobs * duration_s
            levels[jobs] = {"video_s_per_s": video_s / wall_s,
                            "cpu_s_per_video_s": {name: (cpu_after[name] - cpu_before.get(name, 0.0)) / video_s
                                                  for name in cpu_after}}
    return levels


def main() -> int:
    args = common.parse_args(__doc__, "a 3 s 640x360 video, one round")
    duration_s, size = (3, (640, 360)) if args.quick else (20, (1280, 720))
    path = common.video(duration_s, size)
    results = common.interleaved({side: (lambda on=(side == "on"): one_side(on, path, duration_s, args.port))
                                  for side in ("on", "off")}, args.repeats)
    rows, cpu_rows = [], []
    for jobs in LEVELS:
        on, off = (common.median(r[jobs]["video_s_per_s"] for r in results[side]) for side in ("on", "off"))
        rows.append({"jobs": jobs, "ahead_video_s_per_s": on, "one_after_the_other": off, "ahead / not": on / off})
        cpu = {side: _median_cpu([r[jobs]["cpu_s_per_video_s"] for r in results[side]]) for side in ("on", "off")}
        for name in sorted(set(cpu["on"]) | set(cpu["off"]), key=lambda n: -cpu["off"].get(n, 0.0)):
            on_cpu, off_cpu = cpu["on"].get(name, 0.0), cpu["off"].get(name, 0.0)
            if max(on_cpu, off_cpu) >= 0.005:
                cpu_rows.append({"jobs": jobs, "process": name, "ahead_cpu_s_per_video_s": on_cpu,
                                 "one_after_the_other": off_cpu, "difference": on_cpu - off_cpu})
        total = {side: sum(cpu[side].values()) for side in ("on", "off")}
        cpu_rows.append({"jobs": jobs, "process": "all", "ahead_cpu_s_per_video_s": total["on"],
                         "one_after_the_other": total["off"], "difference": total["on"] - total["off"]})
    print(f"decode ahead: {path.name} per job, 2 tracking replicas, medians of {args.repeats} alternated rounds")
    print(common.table(rows))
    print("CPU seconds per video-second, by process (medians):")
    print(common.table(cpu_rows))
    common.write_result("decode_ahead", args.quick, {
        "video": path.name, "repeats": args.repeats, "rows": rows, "cpu_rows": cpu_rows,
        "raw": {side: [{str(k): v for k, v in r.items()} for r in runs] for side, runs in results.items()},
    })
    return 0


def _at_once(svc: common.LocalService, path, jobs: int) -> None:
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(lambda _: svc.run_job(path, formats="json"), range(jobs)))


def _median_cpu(runs: list[dict[str, float]]) -> dict[str, float]:
    return {name: common.median(run.get(name, 0.0) for run in runs) for name in set().union(*runs)}


if __name__ == "__main__":
    raise SystemExit(main())
