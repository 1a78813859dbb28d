"""Upload: memory and throughput of the ingress and of the Serve proxy (which carries the
body to it) while receiving a 1 GiB file, sent in one request or in parts.

- ``one request``: the raw body in 1 MiB pieces, as ``Client.submit`` sends small files
  (``limits.max_body_bytes`` raised for the benchmark: by default a body this large is
  refused and must go in parts);
- ``in parts``: ``POST /v1/uploads`` then ``PUT`` parts of 8 MiB (``Client``'s part size),
  as ``Client.submit`` sends large files;
- baseline, in the same run: writing the same bytes in the same pieces to a file on the
  same disk (the ceiling for a streamed upload).

The bytes are not a video: once they are on disk the probe refuses them (415), so what is
measured is the receiving, up to the job's creation. Each upload runs on a fresh local
service (memory freed by an earlier upload would be reused, not measured); runs alternate;
medians are reported.
Memory: the peak of each process's private memory (``RssAnon``, sampled every 50 ms) above
its level before the upload; RSS also counts pages of Ray's shared object store, which the
proxy's messages to the replica pass through (bounded by the store; reported beside it).

    python bench/upload.py [--quick] [--repeats N] [--port 87xx]
"""

from __future__ import annotations

import os
import tempfile
import time

import common

PIECE = 2**20
PART = 8 * 2**20  # pose_pipeline.client.PART_BYTES


def _body(total: int, piece: int = PIECE):
    block = os.urandom(piece)
    sent = 0
    while sent < total:
        chunk = block[:min(piece, total - sent)]
        sent += len(chunk)
        yield chunk


def one_request(http, url: str, total: int):
    return http.post(f"{url}/v1/jobs", params={"filename": "upload.bin"}, content=_body(total),
                     headers={"Content-Type": "application/octet-stream"})


def in_parts(http, url: str, total: int):
    upload = http.post(f"{url}/v1/uploads", params={"filename": "upload.bin", "size": total}).json()
    for part in _body(total, PART):
        response = http.put(f"{url}/v1/uploads/{upload['id']}", params={"offset": upload["offset"]}, content=part)
        response.raise_for_status()
        upload = response.json()
    return http.post(f"{url}/v1/jobs", params={"upload": upload["id"]})


def measure(send, port: int | None, total: int) -> dict:
    """One upload on a fresh service: a process's peak tells only of this upload (memory
    freed by an earlier one would be reused, not measured)."""
    import httpx

    service = common.LocalService(port)
    service.settings.setdefault("limits", {})["max_body_bytes"] = 2 * total  # to measure one request
    with service as svc:
        pids = {k: v for k, v in svc.processes().items() if k in ("Ingress", "ProxyActor")}
        with common.RssSampler(pids, period_s=0.05) as sampler, httpx.Client(timeout=600) as http:
            started = time.perf_counter()
            response = send(http, svc.url, total)
            seconds = time.perf_counter() - started
    growth = {name: sampler.by_name(sampler.peak_anon)[name] - sampler.by_name(sampler.first_anon)[name]
              for name in pids}
    rss_growth = {name: sampler.by_name()[name] - sampler.by_name(sampler.first)[name] for name in pids}
    return {"bytes": total, "seconds": seconds, "mib_per_s": common.mib(total) / seconds,
            "status": response.status_code, "error_code": (response.json().get("error") or {}).get("code"),
            "private_growth_bytes": growth, "rss_growth_bytes": rss_growth}


def disk_write(total: int) -> dict:
    with tempfile.NamedTemporaryFile(dir=common.OUT, prefix="upload-baseline-") as fh:
        started = time.perf_counter()
        for piece in _body(total):
            fh.write(piece)
        fh.flush()
        seconds = time.perf_counter() - started
    return {"bytes": total, "seconds": seconds, "mib_per_s": common.mib(total) / seconds}


def main() -> int:
    args = common.parse_args(__doc__, "a 128 MiB upload, one round", default_repeats=3)
    repeats = args.repeats
    total = 128 * 2**20 if args.quick else 2**30
    results = common.interleaved({"one request": lambda: measure(one_request, args.port, total),
                                  "in parts": lambda: measure(in_parts, args.port, total),
                                  "disk write": lambda: disk_write(total)}, repeats)
    disk = common.median(r["mib_per_s"] for r in results["disk write"])
    rows = []
    for name in ("one request", "in parts"):
        speed = common.median(r["mib_per_s"] for r in results[name])
        row = {"run": name, "mib_per_s": speed, "vs_disk_write": speed / disk}
        for process in ("ProxyActor", "Ingress"):
            row[f"{process}_private_growth_mib"] = common.mib(
                common.median(r["private_growth_bytes"][process] for r in results[name]))
            row[f"{process}_rss_growth_mib"] = common.mib(
                common.median(r["rss_growth_bytes"][process] for r in results[name]))
        rows.append(row)
    rows.append({"run": "disk write (baseline)", "mib_per_s": disk, "vs_disk_write": 1.0})
    statuses = sorted({(r["status"], r["error_code"]) for k in ("one request", "in parts") for r in results[k]})
    print(f"upload of {common.mib(total):.0f} MiB: medians of {repeats} interleaved rounds; "
          f"responses (status, code): {statuses}")
    print(common.table(rows))
    common.write_result("upload", args.quick, {"bytes": total, "part_bytes": PART, "repeats": repeats,
                                               "rows": rows, "raw": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
