"""Serving overhead: end-to-end time through the HTTP API on a local cluster against the
offline CLI (``pose-pipeline track``) on the same video, engine and settings.

The service's time is what a client sees: upload, job, wait (Server-Sent Events), download
of the JSON result (the job asks for JSON only, as the CLI writes one format); the cluster is
started once before (its start time is reported apart).
The CLI's is a fresh ``pose-pipeline --config <the service's settings> track VIDEO -o out.json``
process, as a user runs it. As context, the same run in this process (``track_file``, what
the CLI calls, without the interpreter start and imports) is timed too. All run on a long and
a short video of the same kind
(720p, 60 s and 10 s in full mode), alternating (CLI, in-process, service, ...).
From the two lengths, each side's time is split as ``fixed + per_frame x frames`` (a line
through the two medians): the fixed per-job cost and the per-frame cost, for both.
Target: the service's overhead on the 60 s 720p video under 10%.

    python bench/serving_overhead.py [--quick] [--repeats N] [--port 87xx]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import common


def track_in_process(path: Path, settings: dict, output: Path) -> float:
    """What ``pose-pipeline track`` does, timed from engine creation to the written result."""
    import time

    from pose_pipeline.config import Settings
    from pose_pipeline.engines.registry import EngineRegistry
    from pose_pipeline.pipeline import JobOptions, track_file
    from pose_pipeline.results.writers import ResultFiles

    started = time.perf_counter()
    config = Settings.from_dict(settings)
    engine = EngineRegistry().create(config.engine.name, config.engine.options)
    try:
        files = ResultFiles(output.parent, ["json"], stem=output.stem)
        track_file(path, engine, config, JobOptions(formats=("json",)), files)
    finally:
        engine.close()
    return time.perf_counter() - started


def main() -> int:
    args = common.parse_args(__doc__, "4 s and 1 s 640x360 videos, one round")
    repeats = args.repeats
    if args.quick:
        long_s, short_s, size = 4, 1, (640, 360)
    else:
        long_s, short_s, size = 60, 10, (1280, 720)
    videos = {"long": common.video(long_s, size), "short": common.video(short_s, size)}
    frames = {"long": round(long_s * 30), "short": round(short_s * 30)}
    service = common.LocalService(args.port)
    settings = {k: v for k, v in service.settings.items() if k != "store"}
    runs = {}
    with tempfile.TemporaryDirectory(dir=common.OUT) as tmp, common.cli_config(settings) as config, service as svc:
        common.log(f"service up on {svc.url} in {svc.start_s:.1f} s")
        svc.run_job(videos["short"])  # warm-up: first job pays for lazy imports in the replicas
        for length in ("long", "short"):
            runs[f"cli_{length}"] = lambda length=length: common.run_cli_track(
                videos[length], Path(tmp) / f"{length}.json", config)
            runs[f"inproc_{length}"] = lambda length=length: track_in_process(
                videos[length], settings, Path(tmp) / f"{length}-inproc.json")
            runs[f"service_{length}"] = lambda length=length: svc.run_job(videos[length], formats="json")
        results = common.interleaved(runs, repeats)
        start_s = svc.start_s
    seconds = {name: common.median(r if isinstance(r, float) else r["total_s"] for r in values)
               for name, values in results.items()}
    fit = {}
    for side in ("cli", "inproc", "service"):
        per_frame = (seconds[f"{side}_long"] - seconds[f"{side}_short"]) / (frames["long"] - frames["short"])
        fit[side] = {"fixed_s": seconds[f"{side}_long"] - per_frame * frames["long"], "per_frame_ms": per_frame * 1e3}
    overhead = {length: seconds[f"service_{length}"] / seconds[f"cli_{length}"] - 1 for length in ("long", "short")}
    rows = [{"video": f"{length} ({videos[length].name})", "frames": frames[length],
             "cli_s": seconds[f"cli_{length}"], "inproc_s": seconds[f"inproc_{length}"],
             "service_s": seconds[f"service_{length}"],
             "ratio": seconds[f"service_{length}"] / seconds[f"cli_{length}"],
             "overhead_%": 100 * overhead[length],
             "vs_inproc_%": 100 * (seconds[f"service_{length}"] / seconds[f"inproc_{length}"] - 1)}
            for length in ("long", "short")]
    split = [{"side": side, "fixed_s": fit[side]["fixed_s"], "per_frame_ms": fit[side]["per_frame_ms"]}
             for side in ("cli", "inproc", "service")]
    for base in ("cli", "inproc"):
        split.append({"side": f"service - {base}", "fixed_s": fit["service"]["fixed_s"] - fit[base]["fixed_s"],
                      "per_frame_ms": fit["service"]["per_frame_ms"] - fit[base]["per_frame_ms"]})
    service_parts = [{"video": length, **{k: common.median(r[k] for r in results[f"service_{length}"])
                                          for k in ("submit_s", "until_done_s", "total_s", "server_queued_s",
                                                    "server_running_s")}} for length in ("long", "short")]
    met = overhead["long"] < 0.10
    print(f"serving overhead: medians of {repeats} interleaved rounds; cluster start {start_s:.1f} s (not counted)")
    print(common.table(rows))
    print("\ntime = fixed + per_frame x frames (line through the two lengths):")
    print(common.table(split))
    print("\nservice job, parts (client view; server's queued/running from the job status):")
    print(common.table(service_parts))
    print(f"target (overhead < 10% on the {long_s} s video): {'met' if met else 'MISSED'} "
          f"({100 * overhead['long']:.1f}%)")
    common.write_result("serving_overhead", args.quick, {
        "videos": {k: v.name for k, v in videos.items()}, "frames": frames, "repeats": repeats,
        "cluster_start_s": start_s, "rows": rows, "split": split, "service_parts": service_parts,
        "target_met": met, "raw": results,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
