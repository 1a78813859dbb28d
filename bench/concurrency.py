"""Concurrency: throughput (video-seconds processed per wall second) for 1, 2 and 4 jobs
submitted at once, with two tracking replicas, and where the time goes per stage.

One local cluster (Tracking: 2 replicas of 0.5 CPU; jobs.max_running: 4), the same video
submitted N times at once through the HTTP API; wall time from the first upload to the last
result downloaded. Per stage, the seconds spent (``ray_pose_stage_seconds_total`` by stage,
the project's own metrics, scraped from Ray's metrics export port before and after)
and the frames counted (``ray_pose_frames_processed_total``). Rounds alternate N = 1, 2, 4;
medians are reported; scaling is throughput(N) / throughput(1).

    python bench/concurrency.py [--quick] [--repeats N] [--port 87xx]
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import common

STAGES = ("decode", "tracking", "aggregation")
LEVELS = (1, 2, 4)


def stage_totals(samples: dict) -> dict[str, dict[str, float]]:
    return {stage: {"seconds": common.metric_sum(samples, "ray_pose_stage_seconds_total", stage=stage),
                    "chunks": common.metric_sum(samples, "ray_pose_chunk_latency_seconds_count", stage=stage),
                    "frames": common.metric_sum(samples, "ray_pose_frames_processed_total", stage=stage)}
            for stage in STAGES}


def one_level(svc: common.LocalService, path, jobs: int, frames_per_job: int) -> dict:
    before = stage_totals(svc.metrics())
    started = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(lambda _: svc.run_job(path), range(jobs)))
    wall = time.perf_counter() - started
    expected = before["aggregation"]["frames"] + jobs * frames_per_job
    after = stage_totals(common.wait_metric(svc, "ray_pose_frames_processed_total", expected, stage="aggregation"))
    stages = {stage: {k: after[stage][k] - before[stage][k] for k in after[stage]} for stage in STAGES}
    return {"wall_s": wall, "jobs": results, "stages": stages}


def main() -> int:
    args = common.parse_args(__doc__, "a 3 s 640x360 video, one round")
    repeats = args.repeats
    duration_s, size = (3, (640, 360)) if args.quick else (20, (1280, 720))
    path = common.video(duration_s, size)
    frames_per_job = round(duration_s * 30)
    service = common.LocalService(args.port, metrics=True, deployments=common.deployment_options(
        Tracking={"num_replicas": 2, "ray_actor_options": {"num_cpus": 0.5}}))
    service.settings["jobs"]["max_running"] = max(LEVELS)
    with service as svc:
        common.log(f"service up on {svc.url} in {svc.start_s:.1f} s; tracking replicas: "
                   f"{len(svc.processes().get('Tracking', []))}")
        svc.run_job(path)  # warm-up
        results = common.interleaved({n: (lambda n=n: one_level(svc, path, n, frames_per_job)) for n in LEVELS},
                                     repeats)
    rows, stage_rows = [], []
    base = None
    for n in LEVELS:
        wall = common.median(r["wall_s"] for r in results[n])
        throughput = n * duration_s / wall
        base = base or throughput
        rows.append({"jobs": n, "wall_s": wall, "video_s_per_s": throughput, "scaling": throughput / base,
                     "job_s_median": common.median(j["total_s"] for r in results[n] for j in r["jobs"])})
        row = {"jobs": n}
        for stage in STAGES:
            seconds = common.median(r["stages"][stage]["seconds"] for r in results[n])
            frames = common.median(r["stages"][stage]["frames"] for r in results[n])
            row[f"{stage}_s"] = seconds
            row[f"{stage}_ms/frame"] = 1e3 * seconds / frames if frames else float("nan")
            row[f"{stage}_busy"] = seconds / wall  # replica-seconds per wall second
        stage_rows.append(row)
    print(f"concurrency: {path.name} ({duration_s} s, {frames_per_job} frames) per job, 2 tracking replicas, "
          f"medians of {repeats} interleaved rounds")
    print(common.table(rows))
    print("\nper stage (project metrics; busy = stage seconds / wall seconds, summed over replicas):")
    print(common.table(stage_rows))
    common.write_result("concurrency", args.quick, {
        "video": path.name, "duration_s": duration_s, "frames_per_job": frames_per_job, "repeats": repeats,
        "rows": rows, "stages": stage_rows, "raw": {str(k): v for k, v in results.items()},
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
