"""Memory bounded: peak RSS of every deployment's replica (Ingress, Decode, Tracking,
Aggregation; Serve's controller and proxy as context) for a short and a long video of the
same resolution and frame rate.

Each run starts a fresh local cluster (peaks are per process lifetime), runs one job through
the HTTP API (JSON and NPZ results, the default) and reads each process's peak resident set
from the kernel (``VmHWM`` in /proc/PID/status: the true peak, not a sample) before shutting
down. Runs alternate (short, long, short, long); medians are reported.
Target: for every process, the long video's peak within 1.2x of the short one's. A Ray
worker's RSS also counts the pages of the node's shared object store it has touched
(``RssShmem``: chunks written by Decode, read zero-copy by Tracking), which grow towards the
object store's size whatever the chunk size; so the target is judged on private memory
(``RssAnon``, sampled every 0.2 s), and the total (VmHWM) is reported beside it.

Full mode: 640x360 at 15 fps, 30 s (450 frames) and 600 s (9000 frames): the resolution is
low so that generating ten minutes of video stays quick; it is the same for both. Chunks
are serve_config.cpu.yaml's 64 MiB (97 frames at 640x360): the short video fills several.

    python bench/memory.py [--quick] [--repeats N] [--port 87xx]
"""

from __future__ import annotations

import time
from pathlib import Path

import common

PROCESSES = ("Ingress", "Decode", "Tracking", "Aggregation", "ServeController", "ProxyActor")
DEPLOYMENTS = PROCESSES[:4]


def one_run(path, port, chunk_bytes: int | None) -> dict:
    service = common.LocalService(port)
    if chunk_bytes:
        service.settings["decode"]["chunk_bytes"] = chunk_bytes
    with service as svc:
        pids = svc.processes()
        before = _peaks(pids)
        with common.RssSampler(pids, period_s=0.2) as sampler:
            job = svc.run_job(path)
        peak = _peaks(pids)
        gone = {name: [pid for pid in pids[name] if not Path(f"/proc/{pid}").exists()] for name in pids}
        return {"job": job, "peak_bytes": peak, "peak_before_job_bytes": before,
                "sampled_peak_bytes": sampler.by_name(),
                "sampled_peak_anon_bytes": sampler.by_name(sampler.peak_anon),
                "sampled_peak_shmem_bytes": sampler.by_name(sampler.peak_shmem),
                "start_rss_bytes": sampler.by_name(sampler.first),
                "exited": {k: v for k, v in gone.items() if v}}


def _peaks(pids: dict[str, list[int]]) -> dict[str, int]:
    """VmHWM by name; a process that has exited (a replica replaced) counts as 0."""
    peaks = {}
    for name, group in pids.items():
        values = []
        for pid in group:
            try:
                values.append(common.peak_rss_bytes(pid))
            except (OSError, RuntimeError):
                values.append(0)
        peaks[name] = max(values)
    return peaks


def main() -> int:
    args = common.parse_args(__doc__, "5 s and 30 s 320x180 videos, 8 MiB chunks, one round")
    repeats = args.repeats
    if args.quick:
        # Small chunks, so that the short video too fills several (a peak is reached when
        # the first full chunk is: a video shorter than a chunk shows a lower peak).
        short_s, long_s, size, fps, chunk_bytes = 5, 30, (320, 180), 15.0, 8 * 2**20
    else:
        short_s, long_s, size, fps, chunk_bytes = 30, 600, (640, 360), 15.0, None
    videos = {"short": common.video(short_s, size, fps), "long": common.video(long_s, size, fps)}
    port = args.port or common.free_port()
    started = time.perf_counter()
    results = common.interleaved({name: (lambda path=path: one_run(path, port, chunk_bytes))
                                  for name, path in videos.items()},
                                 repeats)
    rows, ratios = [], {}
    for name in PROCESSES:
        short = [r["peak_bytes"].get(name, 0) for r in results["short"]]
        long = [r["peak_bytes"].get(name, 0) for r in results["long"]]
        if not any(short) or not any(long):
            continue
        ratio = common.median(long) / common.median(short)
        rows.append({"process": name, "short_peak_mib": common.mib(common.median(short)),
                     "long_peak_mib": common.mib(common.median(long)), "ratio": ratio,
                     "long_sampled_mib": common.mib(common.median(r["sampled_peak_bytes"].get(name, 0)
                                                                  for r in results["long"])),
                     "long_before_job_mib": common.mib(common.median(r["peak_before_job_bytes"].get(name, 0)
                                                                     for r in results["long"])),
                     **{f"{length}_{part}_mib": common.mib(common.median(r[f"sampled_peak_{part}_bytes"].get(name, 0)
                                                                         for r in results[length]))
                        for length in ("short", "long") for part in ("anon", "shmem")},
                     "anon_ratio": common.median(r["sampled_peak_anon_bytes"].get(name, 0) for r in results["long"])
                     / max(1, common.median(r["sampled_peak_anon_bytes"].get(name, 0) for r in results["short"])),
                     })
        anon = rows[-1]["anon_ratio"]
        ratios[name] = anon
        rows[-1]["target"] = "met" if anon <= 1.2 else ("MISSED" if name in DEPLOYMENTS else "(context)")
    met = all(ratios.get(name, 99) <= 1.2 for name in DEPLOYMENTS)
    jobs = [{"video": f"{name} ({videos[name].name})", "frames": results[name][0]["job"]["frames"],
             "job_s": common.median(r["job"]["total_s"] for r in results[name])} for name in videos]
    print(f"memory: peak RSS (VmHWM) per process, medians of {repeats} interleaved rounds "
          f"({time.perf_counter() - started:.0f} s)")
    print(common.table(jobs))
    print(common.table(rows))
    print("ratio: VmHWM long/short (RSS, object store pages included); anon_ratio: private memory\n"
          "(RssAnon, sampled) long/short, the target's measure: RssShmem is the node's shared object store")
    print(f"target (private memory, long <= 1.2x short for every deployment): {'met' if met else 'MISSED'}")
    common.write_result("memory", args.quick, {
        "videos": {k: v.name for k, v in videos.items()}, "size": size, "fps": fps, "repeats": repeats,
        "chunk_bytes": chunk_bytes or "serve_config.cpu.yaml (64 MiB)", "jobs": jobs, "rows": rows, "target_met": met,
        "raw": results,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
