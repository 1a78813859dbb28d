"""Upload: the ingress's peak RSS (and the Serve proxy's, which carries the body to it) and
the throughput while receiving a 1 GiB upload through the HTTP API.

The body is sent raw (``application/octet-stream``) in 1 MiB pieces, as ``Client.submit``
does; it is not a video, so once the whole body is on disk the probe refuses it (415/422):
what is measured is the receiving, up to the job's creation. Baselines in the same run,
alternating with the uploads: writing the same bytes in the same pieces to a file on the
same disk (the ceiling for a streamed upload), and a small upload (64 MiB) for the memory:
a bounded receiver's peak does not grow with the size of the upload.
Peaks are the kernel's (``VmHWM``) and sampled RSS every 50 ms (the process lives on
between uploads, so the sampled peak above the level before each upload is what it costs).

    python bench/upload.py [--quick] [--repeats N] [--port 87xx]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import common

PIECE = 2**20


def _body(total: int):
    block = os.urandom(PIECE)
    sent = 0
    while sent < total:
        piece = block[:min(PIECE, total - sent)]
        sent += len(piece)
        yield piece


def upload(svc: common.LocalService, pids: dict[str, list[int]], total: int) -> dict:
    import httpx

    with common.RssSampler(pids, period_s=0.05) as sampler, httpx.Client(timeout=600) as http:
        started = time.perf_counter()
        response = http.post(f"{svc.url}/v1/jobs", params={"filename": "upload.bin"}, content=_body(total),
                             headers={"Content-Type": "application/octet-stream"})
        seconds = time.perf_counter() - started
    start, peak = sampler.by_name(sampler.first), sampler.by_name()
    return {"bytes": total, "seconds": seconds, "mib_per_s": common.mib(total) / seconds,
            "status": response.status_code, "error_code": (response.json().get("error") or {}).get("code")
            if response.headers.get("content-type", "").startswith("application/json") else None,
            "rss_before_bytes": start, "sampled_peak_bytes": peak,
            "peak_growth_bytes": {k: peak[k] - start.get(k, 0) for k in peak},
            "vmhwm_bytes": {name: max(common.peak_rss_bytes(pid) for pid in p) for name, p in pids.items()}}


def disk_write(total: int) -> dict:
    with tempfile.NamedTemporaryFile(dir=common.OUT, prefix="upload-baseline-") as fh:
        started = time.perf_counter()
        for piece in _body(total):
            fh.write(piece)
        fh.flush()
        seconds = time.perf_counter() - started
    return {"bytes": total, "seconds": seconds, "mib_per_s": common.mib(total) / seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 128 MiB upload (16 MiB small), one round")
    parser.add_argument("--repeats", type=int, help="rounds (default 3; quick: 1)")
    parser.add_argument("--port", type=int, help="Serve HTTP port (default: a free one in 8700-8799)")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    large, small = (128 * 2**20, 16 * 2**20) if args.quick else (2**30, 64 * 2**20)
    with common.LocalService(args.port) as svc:
        pids = {k: v for k, v in svc.processes().items() if k in ("Ingress", "ProxyActor")}
        common.log(f"service up on {svc.url} in {svc.start_s:.1f} s; watching {pids}")
        results = common.interleaved({"upload_large": lambda: upload(svc, pids, large),
                                      "disk_write": lambda: disk_write(large),
                                      "upload_small": lambda: upload(svc, pids, small)}, repeats)
    throughput = {k: common.median(r["mib_per_s"] for r in v) for k, v in results.items()}
    rows = [{"run": f"upload {common.mib(large):.0f} MiB", "mib_per_s": throughput["upload_large"],
             "vs_disk_write": throughput["upload_large"] / throughput["disk_write"]},
            {"run": f"disk write {common.mib(large):.0f} MiB (baseline)", "mib_per_s": throughput["disk_write"],
             "vs_disk_write": 1.0},
            {"run": f"upload {common.mib(small):.0f} MiB", "mib_per_s": throughput["upload_small"],
             "vs_disk_write": throughput["upload_small"] / throughput["disk_write"]}]
    memory = []
    for name in ("Ingress", "ProxyActor"):
        growth = {k: common.median(r["peak_growth_bytes"].get(name, 0) for r in results[k])
                  for k in ("upload_large", "upload_small")}
        memory.append({"process": name,
                       "rss_before_mib": common.mib(common.median(r["rss_before_bytes"].get(name, 0)
                                                                  for r in results["upload_large"])),
                       "peak_large_mib": common.mib(common.median(r["sampled_peak_bytes"].get(name, 0)
                                                                  for r in results["upload_large"])),
                       "growth_large_mib": common.mib(growth["upload_large"]),
                       "growth_small_mib": common.mib(growth["upload_small"]),
                       "vmhwm_end_mib": common.mib(max(r["vmhwm_bytes"].get(name, 0) for v in results.values()
                                                       for r in v if "vmhwm_bytes" in r))})
    statuses = sorted({(r["status"], r["error_code"]) for k in ("upload_large", "upload_small") for r in results[k]})
    print(f"upload: medians of {repeats} interleaved rounds; responses (status, code): {statuses}")
    print(common.table(rows))
    print(common.table(memory))
    common.write_result("upload", args.quick, {"large_bytes": large, "small_bytes": small, "repeats": repeats,
                                               "rows": rows, "memory": memory, "raw": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
