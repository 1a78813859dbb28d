"""Decoding ahead on and off (``jobs.decode_ahead``): throughput for 1, 2 and 4 jobs at once.

The setting is the job runner's, so each side needs a cluster of its own: a fresh local
cluster per side and round, alternated (on, off, on, off), each with the concurrency
benchmark's deployments (Tracking: 2 replicas of 0.5 CPU; jobs.max_running 4) and a warm-up
job. Reports video-seconds per wall second, medians, and on / off.

    python bench/decode_ahead.py [--quick] [--repeats N] [--port 87xx]
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import common

LEVELS = (1, 2, 4)


def one_side(decode_ahead: bool, path, duration_s: float, port: int | None) -> dict[int, float]:
    """Video-seconds per wall second at each level, on a fresh cluster."""
    service = common.LocalService(port, deployments=common.deployment_options(
        Tracking={"num_replicas": 2, "ray_actor_options": {"num_cpus": 0.5}}))
    service.settings["jobs"].update(max_running=max(LEVELS), decode_ahead=decode_ahead)
    throughput = {}
    with service as svc:
        svc.run_job(path)  # warm-up
        for jobs in LEVELS:
            started = time.perf_counter()
            with ThreadPoolExecutor(jobs) as pool:
                list(pool.map(lambda _: svc.run_job(path, formats="json"), range(jobs)))
            throughput[jobs] = jobs * duration_s / (time.perf_counter() - started)
    return throughput


def main() -> int:
    args = common.parse_args(__doc__, "a 3 s 640x360 video, one round")
    duration_s, size = (3, (640, 360)) if args.quick else (20, (1280, 720))
    path = common.video(duration_s, size)
    results = common.interleaved({side: (lambda on=(side == "on"): one_side(on, path, duration_s, args.port))
                                  for side in ("on", "off")}, args.repeats)
    rows = []
    for jobs in LEVELS:
        on, off = (common.median(r[jobs] for r in results[side]) for side in ("on", "off"))
        rows.append({"jobs": jobs, "ahead_video_s_per_s": on, "one_after_the_other": off, "ahead / not": on / off})
    print(f"decode ahead: {path.name} per job, 2 tracking replicas, medians of {args.repeats} alternated rounds")
    print(common.table(rows))
    common.write_result("decode_ahead", args.quick, {
        "video": path.name, "repeats": args.repeats, "rows": rows,
        "raw": {side: [{str(k): v for k, v in r.items()} for r in runs] for side, runs in results.items()},
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
