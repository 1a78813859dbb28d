"""Chaos run: bounded load on loopback for a few minutes while replicas and a node are killed at random.

In the spirit of Ray Serve's own long-running chaos test: a cluster of several nodes on this
machine (``ray start`` for a head and two worker nodes, tests/support/multinode.py), the job
records in a real PostgreSQL server (tests/support/postgres.py), two Ingress replicas, the
Tracking replicas on the worker nodes. Meanwhile:

- ``--clients`` client threads each submit a short synthetic video, follow it to its end and
  fetch the result, again and again: at most that many jobs are in flight (bounded load);
- one reader polls ``/readyz`` and ``GET /v1/jobs`` twice a second;
- a killer sends SIGKILL, every 8-20 s (uniformly at random), to a random replica of Tracking,
  Decode, Aggregation or Ingress, or (at most every ``--node-every`` seconds) to the raylet of
  a random worker node, as if its machine died; a fresh worker node then joins, so that the
  cluster keeps room for the replacements.

Clients behave as docs/api.md asks: a 503 with ``Retry-After`` or a connection error is retried
after a pause, for at most ``RETRY_BUDGET_S`` per request. Counted: every answer by status (and
connection errors), the requests that never got an answer within their budget (lost, must be
0), and the jobs that were accepted (202) but did not end ``succeeded`` with the result of the
offline CLI (lost, must be 0). Written to ``bench/out/chaos.json`` (``chaos-quick.json``).

    python bench/chaos.py              # 4 minutes of chaos
    python bench/chaos.py --quick      # 90 s
    python bench/chaos.py --no-node-kills   # replicas only

Never runs ``ray stop``: the cluster's processes are found by its own temporary folder, and
only those are killed.
"""

from __future__ import annotations

import collections
import random
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

sys.path.insert(0, str(common.ROOT / "tests"))
from support.api import offline_result, wait_until  # noqa: E402
from support.multinode import MultiNodeCluster  # noqa: E402
from support.postgres import PostgresServer  # noqa: E402

SIZE = (320, 180)
CHUNK_FRAMES = 10
#: A request is lost when it has no answer other than 503 / a connection error for this long.
RETRY_BUDGET_S = 90.0
#: A job is lost when it has not ended this long after it was accepted.
JOB_BUDGET_S = 300.0
CHUNK_TIMEOUT_S = 60
REPLICA_KINDS = ("Tracking", "Decode", "Aggregation", "Ingress")


class Tally:
    """Thread-safe counts of what the clients saw."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: collections.Counter[str] = collections.Counter()
        self.by_request: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.lost_requests: list[dict[str, Any]] = []
        self.jobs: collections.Counter[str] = collections.Counter()
        self.lost_jobs: list[dict[str, Any]] = []
        self.job_seconds: list[float] = []

    def answer(self, request: str, status: str) -> None:
        with self.lock:
            self.statuses[status] += 1
            self.by_request[request][status] += 1


def call(http: httpx.Client, tally: Tally, request: str, method: str, url: str, *, ok: tuple[int, ...] = (200,),
         **kwargs: Any) -> httpx.Response | None:
    """One request as a well-behaved client makes it: retried after a 503 or a connection
    error until ``RETRY_BUDGET_S``; None (and counted as lost) if it never got an answer."""
    deadline = time.monotonic() + RETRY_BUDGET_S
    while True:
        try:
            response = http.request(method, url, **kwargs)
            status = str(response.status_code)
        except httpx.TransportError as exc:
            response, status = None, f"connection error ({type(exc).__name__})"
        tally.answer(request, status)
        if response is not None and (response.status_code in ok or response.status_code not in (500, 502, 503, 504)):
            return response
        if time.monotonic() > deadline:
            with tally.lock:
                tally.lost_requests.append({"request": request, "url": url, "last": status})
            return None
        retry_after = float(response.headers.get("retry-after", 1)) if response is not None else 1.0
        time.sleep(min(retry_after, 5.0))


def client(number: int, url: str, video: bytes, reference: dict, stop: threading.Event, tally: Tally) -> None:
    with httpx.Client(base_url=url, timeout=60) as http:
        while not stop.is_set():
            submitted = call(http, tally, "POST /v1/jobs", "POST", "/v1/jobs", ok=(202,),
                             params={"filename": f"chaos-{number}.mp4"}, content=video,
                             headers={"Content-Type": "video/mp4"})
            if submitted is None:
                continue
            if submitted.status_code != 202:  # a 4xx to a valid request is a bug: count it as lost
                with tally.lock:
                    tally.lost_requests.append({"request": "POST /v1/jobs", "last": submitted.status_code,
                                                "body": submitted.text[:300]})
                continue
            job_id, accepted = submitted.json()["job_id"], time.monotonic()
            with tally.lock:
                tally.jobs["accepted"] += 1
            state, body = _follow(http, tally, job_id, accepted)
            outcome = state
            if state == "succeeded":
                result = call(http, tally, "GET result", "GET", f"/v1/jobs/{job_id}/result")
                outcome = "identical" if result is not None and result.json() == reference else "different result"
            with tally.lock:
                tally.jobs[outcome] += 1
                if outcome == "identical":
                    tally.job_seconds.append(time.monotonic() - accepted)
                else:
                    tally.lost_jobs.append({"job_id": job_id, "outcome": outcome,
                                            "error": (body or {}).get("error")})


def _follow(http: httpx.Client, tally: Tally, job_id: str, accepted: float) -> tuple[str, dict | None]:
    body = None
    while time.monotonic() - accepted < JOB_BUDGET_S:
        response = call(http, tally, "GET job", "GET", f"/v1/jobs/{job_id}")
        if response is not None and response.status_code == 200:
            body = response.json()
            if body["state"] in ("succeeded", "failed", "cancelled"):
                return body["state"], body
        time.sleep(0.25)
    return "not ended in time", body


def reader(url: str, stop: threading.Event, tally: Tally) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        while not stop.is_set():
            for request, path in (("GET /readyz", "/readyz"), ("GET /v1/jobs", "/v1/jobs?limit=5")):
                try:
                    tally.answer(request, str(http.get(path).status_code))
                except httpx.TransportError as exc:
                    tally.answer(request, f"connection error ({type(exc).__name__})")
            time.sleep(0.5)


def killer(cluster: MultiNodeCluster, stop: threading.Event, kills: list[dict[str, Any]], node_kills: bool,
           node_every_s: float, started: float) -> None:
    rng = random.Random(15)
    last_node = time.monotonic()  # the first node kill comes after the first node_every_s
    workers = 2
    while not stop.wait(rng.uniform(8, 20)):
        at = round(time.monotonic() - started, 1)
        if node_kills and time.monotonic() - last_node > node_every_s and rng.random() < 0.5:
            alive = [n for n in cluster.nodes if n.name != "head" and n.raylet() is not None]
            if len(alive) >= 2:
                victim = rng.choice(alive)
                common.log(f"chaos: killing the raylet of node {victim.name}")
                cluster.kill_raylet(victim)
                kills.append({"at_s": at, "kind": "node", "name": victim.name})
                workers += 1
                cluster.add_worker(f"worker-{workers}")  # a replacement machine joins
                last_node = time.monotonic()
                continue
        kind = rng.choice(REPLICA_KINDS)
        found = cluster.replicas(kind)
        if not found:
            kills.append({"at_s": at, "kind": kind, "skipped": "no live replica"})
            continue
        victim_proc = rng.choice(found)
        common.log(f"chaos: killing a {kind} replica (pid {victim_proc.pid})")
        try:
            victim_proc.send_signal(signal.SIGKILL)
            kills.append({"at_s": at, "kind": kind, "pid": victim_proc.pid})
        except psutil.NoSuchProcess:
            kills.append({"at_s": at, "kind": kind, "skipped": "gone"})


def main() -> int:
    def extra(parser):
        parser.add_argument("--seconds", type=float, help="how long the chaos lasts (default 240; quick: 90)")
        parser.add_argument("--clients", type=int, default=3, help="client threads, each with one job at a time")
        parser.add_argument("--no-node-kills", action="store_true", help="kill replicas only")
        parser.add_argument("--node-every", type=float, default=70.0,
                            help="at least this many seconds between node kills")

    args = common.parse_args(__doc__ or "", "90 s of chaos", port=False, extra=extra)
    seconds = args.seconds or (90.0 if args.quick else 240.0)
    out = common.OUT / "chaos"
    shutil.rmtree(out / "store", ignore_errors=True)  # a previous run's files
    out.mkdir(parents=True, exist_ok=True)
    video = common.video(4, SIZE, fps=15)
    reference = offline_result(video, out / "reference.json")
    database = PostgresServer(port=common.free_port(range(15432, 15532))).start()
    cluster = MultiNodeCluster()
    tally, kills = Tally(), []
    elapsed = 0.0
    try:
        cluster.start()
        cluster.add_worker("worker-1")
        cluster.add_worker("worker-2")
        store = {"root": str(out / "store"), "database": database.new_database()}
        url = cluster.deploy({"store": store, "decode": {"chunk_bytes": SIZE[0] * SIZE[1] * 3 * CHUNK_FRAMES,
                                                         "max_side": None},
                              "jobs": {"lease_s": 3.0, "chunk_timeout_s": CHUNK_TIMEOUT_S, "max_chunk_retries": 3}},
                             {"Ingress": {"num_replicas": 2}})
        with httpx.Client(base_url=url, timeout=30) as http:
            wait_until(lambda: _ready(http), 180, 1, "the application")
        common.log(f"chaos for {seconds:.0f} s: {args.clients} clients, node kills "
                   f"{'off' if args.no_node_kills else f'at most every {args.node_every:.0f} s'}")
        stop, chaos_over = threading.Event(), threading.Event()
        started = time.monotonic()
        workers = [threading.Thread(target=client, args=(n, url, video.read_bytes(), reference, stop, tally))
                   for n in range(args.clients)]
        workers.append(threading.Thread(target=reader, args=(url, stop, tally)))
        chaos = threading.Thread(target=killer, args=(cluster, chaos_over, kills, not args.no_node_kills,
                                                      args.node_every, started))
        for thread in [*workers, chaos]:
            thread.start()
        time.sleep(seconds)
        chaos_over.set()
        chaos.join()
        common.log("chaos over; letting the jobs in flight end")
        stop.set()
        for thread in workers:
            thread.join(JOB_BUDGET_S + RETRY_BUDGET_S)
        elapsed = time.monotonic() - started
    finally:
        cluster.stop()
        database.stop()

    lost_jobs = len(tally.lost_jobs) + tally.jobs["not ended in time"]
    result = {
        "seconds_of_chaos": seconds, "seconds_total": round(elapsed, 1), "clients": args.clients,
        "kills": kills, "kills_by_kind": dict(collections.Counter(k["kind"] for k in kills if "skipped" not in k)),
        "statuses": dict(tally.statuses), "statuses_by_request": {k: dict(v) for k, v in tally.by_request.items()},
        "requests": sum(tally.statuses.values()), "lost_requests": len(tally.lost_requests),
        "lost_request_details": tally.lost_requests, "jobs": dict(tally.jobs), "lost_jobs": len(tally.lost_jobs),
        "lost_job_details": tally.lost_jobs,
        "job_seconds_median": round(common.median(tally.job_seconds), 2) if tally.job_seconds else None,
        "job_seconds_max": round(max(tally.job_seconds), 2) if tally.job_seconds else None,
    }
    seen = sorted({status for counts in tally.by_request.values() for status in counts})
    print(common.table([{"request": request, **{status: counts.get(status, 0) for status in seen}}
                        for request, counts in tally.by_request.items()], ["request", *seen]))
    print(f"kills: {result['kills_by_kind']}")
    print(f"jobs: {result['jobs']}; lost jobs: {lost_jobs}; lost requests: {result['lost_requests']}; "
          f"job time median {result['job_seconds_median']} s, max {result['job_seconds_max']} s")
    common.write_result("chaos", args.quick, result)
    return 0 if lost_jobs == 0 and not tally.lost_requests else 1


def _ready(http: httpx.Client) -> bool:
    try:
        return http.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


if __name__ == "__main__":
    sys.exit(main())
