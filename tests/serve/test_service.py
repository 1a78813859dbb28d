"""The Serve application over real HTTP on a local Ray cluster with a fake GPU: what only
Ray shows (replicas and their placement, the proxy's memory, deployments that cannot start).
The API itself is tested in this process, without Ray, in test_api.py.

Three applications on the shared cluster (deleted after the module):
- "pose" at /: two 0.5-GPU tracking replicas of the motion engine (the synthetic videos are
  its ground truth);
- "broken" at /broken: an engine that cannot load (the upstream PHALP stack is absent);
- "cpu" at /cpu: the embedded default engine, blazepose, on a real clip (and its viewer, in
  Chromium: tests/support/browser.py).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import av
import httpx
import psutil
import pytest
import ray
from ray import serve

from pose_pipeline.assets import synthetic
from pose_pipeline.assets.clips import CARPHONE, clip
from pose_pipeline.results.schema import TrackingResult
from pose_pipeline.video import DecodeOptions

from support.browser import ViewerPage, check_box

pytestmark = [pytest.mark.serve, pytest.mark.slow]

CHUNK_FRAMES = 12
SIZE = (320, 180)


@pytest.fixture(scope="module")
def tmp_module(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("service")


@pytest.fixture(scope="module")
def store(tmp_module) -> Path:
    """The store of the "pose" application."""
    return tmp_module / "store"


@pytest.fixture(scope="module")
def cluster(shared_cluster, tmp_module, store):
    chunk_bytes = SIZE[0] * SIZE[1] * 3 * CHUNK_FRAMES
    common = {"decode": {"chunk_bytes": chunk_bytes, "max_side": None}, "jobs": {"lease_s": 5}}
    shared_cluster.deploy("pose", {**common, "store": {"root": str(store)}},
                          {"Tracking": {"num_replicas": 2, "ray_actor_options": {"num_cpus": 0.05, "num_gpus": 0.5}}})
    shared_cluster.deploy("broken", {**common, "store": {"root": str(tmp_module / "broken-store")},
                                     "engine": {"name": "phalp"}}, route_prefix="/broken")
    shared_cluster.deploy("cpu", {"decode": {"max_side": None}, "store": {"root": str(tmp_module / "cpu-store")},
                                  "engine": {"name": "blazepose"}}, route_prefix="/cpu")
    return shared_cluster


@pytest.fixture(scope="module")
def http(serve_tools, cluster):
    with httpx.Client(base_url=cluster.url(), timeout=120) as client:
        serve_tools.wait_until(lambda: serve_tools.is_ready(client), 120, 0.25, "the application to be ready")
        yield client


@pytest.fixture(scope="module")
def video(tmp_module) -> Path:
    scene = synthetic.demo_scene(duration_s=4, size=SIZE, fps=15)
    return synthetic.write_video(tmp_module / "people.mp4", scene)


def _assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


# --- results --------------------------------------------------------------------------------


def test_blazepose_job_gives_the_skeletons_the_cli_gives(serve_tools, cluster, http, tmp_path):
    """The default engine through the service: the man in carphone, one track, 33 joints in
    every frame, the same result as ``pose-pipeline track``."""
    video = clip(CARPHONE)
    with httpx.Client(base_url=cluster.url("/cpu"), timeout=120) as cpu:
        serve_tools.wait_until(lambda: serve_tools.is_ready(cpu), 120, 0.25, "the blazepose application")
        done = serve_tools.wait_job(cpu, serve_tools.submit(cpu, video)["job_id"])
        assert done["state"] == "succeeded", done
        served = cpu.get(f"/v1/jobs/{done['job_id']}/result").json()
    assert served == serve_tools.offline_result(video, tmp_path / "offline.json", engine="blazepose")
    assert served["engine"]["name"] == "blazepose" and len(served["tracks"]) == 1
    assert all(len(f["people"]) == 1 and len(f["people"][0]["joints_2d"]) == 33 for f in served["frames"])


def test_concurrent_jobs_all_succeed_on_both_tracking_replicas(serve_tools, http, cluster, video):
    jobs = [serve_tools.submit(http, video, name=f"concurrent-{i}.mp4") for i in range(4)]
    results = [serve_tools.wait_job(http, job["job_id"]) for job in jobs]
    assert [r["state"] for r in results] == ["succeeded"] * 4
    logs = sorted(cluster.serve_logs.glob("replica_pose_Tracking_*.log"))
    ids = {job["job_id"] for job in jobs}
    worked = [log for log in logs if any(f"\"pose_job_id\": \"{i}\"" in log.read_text() for i in ids)]
    assert len(serve_tools.replica_processes("pose", "Tracking")) == 2
    assert len(worked) == 2, f"only {len(worked)} of the tracking replicas got chunks"


def test_the_viewer_and_the_overlay_mp4_through_serve(serve_tools, cluster, browser_for_one_test):
    """The viewer of a blazepose job of the Serve application at /cpu (behind a route prefix:
    the page finds the API under it) opens in Chromium and draws the result's box on the
    video; the Aggregation deployment rendered the overlay MP4."""
    video = clip(CARPHONE)
    with httpx.Client(base_url=cluster.url("/cpu"), timeout=120) as cpu:
        serve_tools.wait_until(lambda: serve_tools.is_ready(cpu), 120, 0.25, "the blazepose application")
        done = serve_tools.wait_job(cpu, serve_tools.submit(cpu, video, end_s=2, formats="json,mp4")["job_id"])
        assert done["state"] == "succeeded" and set(done["results"]) == {"json", "mp4"}, done
        result = TrackingResult.from_dict(cpu.get(f"/v1/jobs/{done['job_id']}/result").json())
        overlay = cpu.get(f"/v1/jobs/{done['job_id']}/result", params={"format": "mp4"})
    assert done["urls"]["viewer"] == f"{cluster.url('/cpu')}/v1/jobs/{done['job_id']}/viewer"
    with av.open(io.BytesIO(overlay.content)) as container:
        images = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    size = (done["processing"]["frame_height"], done["processing"]["frame_width"], 3)
    assert len(images) == len(result.frames) > 0 and {image.shape for image in images} == {size}

    (person,) = result.frames[0].people  # the man, in every frame
    view = ViewerPage(browser_for_one_test, done["urls"]["viewer"])
    try:
        view.wait_frame(0)
        check_box(view, result, 0, person.track_id)
        assert view.errors == [] and all(u.startswith(cluster.url("/cpu") + "/v1/") for u in view.urls)
    finally:
        view.close()


# --- uploads --------------------------------------------------------------------------------


def _front_processes(serve_tools, port: int) -> list[psutil.Process]:
    """The ingress replicas and the Serve proxy listening on ``port``: what an upload passes."""
    proxies = [p for p in psutil.process_iter(["cmdline"]) if "ray::ProxyActor" in " ".join(p.info["cmdline"] or [])
               and any(c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in p.net_connections("tcp"))]
    assert len(proxies) == 1
    return proxies + serve_tools.replica_processes("pose", "Ingress")


def _private_bytes(process: psutil.Process) -> int:
    """Resident memory of the process's own (RssAnon). Its RSS also counts the pages of Ray's
    shared object store it has touched, which the proxy's messages to the replica pass
    through: bounded by the store's size, and the node's, not the process's."""
    with open(f"/proc/{process.pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("RssAnon:"))


def test_large_upload_in_parts_stays_in_bounded_memory(serve_tools, http, cluster, store):
    """300 MiB in parts of limits.max_part_bytes (16 MiB by default): neither the proxy nor the
    ingress holds more than a couple of parts. (A body sent in one request is held whole by
    both, measured +300 MiB for 300 MiB: docs/api.md.)"""
    size, part = 300 * 2**20, bytes(range(256)) * (16 * 2**20 // 256)  # not a video
    processes = _front_processes(serve_tools, cluster.port)
    before = [_private_bytes(p) for p in processes]
    peak, stop = list(before), threading.Event()

    def sample():
        while not stop.is_set():
            for i, process in enumerate(processes):
                peak[i] = max(peak[i], _private_bytes(process))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        upload = http.post("/v1/uploads", params={"filename": "big.mp4", "size": size}).json()
        assert upload["max_part_bytes"] == len(part)
        while upload["offset"] < size:
            response = http.put(f"/v1/uploads/{upload['id']}", params={"offset": upload["offset"]},
                                content=part[:size - upload["offset"]])
            assert response.status_code == 200, response.text
            upload = response.json()
    finally:
        stop.set()
        sampler.join()
    grown = {p.name(): (high - low) / 2**20 for p, high, low in zip(processes, peak, before)}
    assert max(grown.values()) < 64, f"grew by (MiB): {grown}"
    _assert_error(http.post("/v1/jobs", params={"upload": upload["id"]}), 415, "not_a_media_file")
    _assert_error(http.get(f"/v1/uploads/{upload['id']}"), 404, "upload_not_found")
    assert serve_tools.spool_files(store) == serve_tools.part_files(store) == []


def test_cli_submit_waits_and_writes_the_result(serve_tools, cluster, video, tmp_path):
    out = tmp_path / "cli.json"
    done = subprocess.run([sys.executable, "-m", "pose_pipeline.cli", "submit", str(video), "--url", cluster.url(),
                           "--wait", "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "100%" in done.stderr and f"{out}: written" in done.stderr
    assert json.loads(out.read_text()) == serve_tools.offline_result(video, tmp_path / "offline.json")
    (viewer,) = [line.removeprefix("viewer: ") for line in done.stderr.splitlines() if line.startswith("viewer: ")]
    job_id = viewer.removeprefix(f"{cluster.url()}/v1/jobs/").removesuffix("/viewer")
    assert len(job_id) == 32 and httpx.get(viewer).status_code == 200
    listed = subprocess.run([sys.executable, "-m", "pose_pipeline.cli", "jobs", "--url", cluster.url(), "--limit", "1",
                             "--state", "succeeded"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[:2] == [job_id, "succeeded"]  # the newest, under the header
    succeeded = httpx.get(f"{cluster.url()}/v1/jobs", params={"state": "succeeded"}).json()["jobs"]
    assert ("more: pose-pipeline jobs --cursor " in listed.stderr) == (len(succeeded) > 1)


def test_a_part_cut_by_the_client_is_dropped_and_the_upload_resumes(serve_tools, http, cluster, video):
    data = video.read_bytes()
    upload = http.post("/v1/uploads", params={"filename": "people.mp4", "size": len(data)}).json()
    url, half = f"/v1/uploads/{upload['id']}", len(data) // 2

    def goes_away():
        yield data[:half // 2]
        raise ConnectionAbortedError("the client goes away mid-part")

    with pytest.raises(ConnectionAbortedError):
        http.put(url, params={"offset": 0}, content=goes_away())

    def send_first_half() -> bool:
        response = http.put(url, params={"offset": 0}, content=data[:half])
        if response.status_code == 409:  # only while the cut part is still being dropped
            assert "being received" in response.json()["error"]["message"], response.text
        return response.status_code == 200

    serve_tools.wait_until(send_first_half, 30, 0.5, "the cut part to be dropped")
    _assert_error(http.put(url, params={"offset": 0}, content=data[half:]), 409, "upload_conflict")
    assert http.get(url).json()["offset"] == half
    _assert_error(http.post("/v1/jobs", params={"upload": upload["id"]}), 409, "upload_conflict")
    assert http.put(url, params={"offset": half}, content=data[half:]).json()["offset"] == len(data)
    tracked = http.post("/v1/track", params={"upload": upload["id"], "fps": "5"})  # the synchronous endpoint
    assert tracked.status_code == 200, tracked.text
    assert len(tracked.json()["frames"]) == 20


def test_a_decode_replica_decodes_no_more_chunks_at_once_than_its_cpus(serve_tools, http, store, video):
    # A replica takes no more CPU than it reserves (less than one here: one decode at a time).
    # It gets four whole-video chunks at once: decoded one at a time, the decodes' own
    # durations add up to no more than the wall time of all four (before: 3x as much).
    decoding = DecodeOptions(chunk_bytes=2**30)
    decode = serve.get_deployment_handle("Decode", "pose").decode
    with ExitStack() as stack:
        tasks = [stack.enter_context(serve_tools.first_chunk_task(store, video, decoding, f"at-once-{i}.mp4"))
                 for i in range(4)]
        started = time.perf_counter()
        replies = [decode.remote(task) for task in tasks]
        refs = [reply.result(timeout_s=60) for reply in replies]
        wall_s = time.perf_counter() - started
        chunks = ray.get([ref.chunk for ref in refs])
    assert all(chunk.chunk.is_last and len(chunk.chunk) == 60 for chunk in chunks)
    assert sum(chunk.seconds for chunk in chunks) <= wall_s


# --- readiness -------------------------------------------------------------------------------


def test_readyz_reports_every_deployment(http):
    body = http.get("/readyz").json()
    assert body["status"] == "ready"
    assert body["deployments"]["Tracking"]["engine"]["name"] == "motion"
    assert http.get("/healthz").json() == {"status": "ok"}


def test_engine_that_cannot_load_is_never_ready_and_says_why(serve_tools, cluster, http, video):
    with httpx.Client(base_url=cluster.url("/broken"), timeout=60) as broken:
        response = serve_tools.wait_until(lambda: broken.get("/readyz"), 60, what="the broken app's ingress")
        assert response.status_code == 503
        tracking = response.json()["error"]["deployments"]["Tracking"]
        assert tracking["code"] == "engine_unavailable" and "phalp" in tracking["message"]
        sync = broken.post("/v1/track", content=video.read_bytes(), headers={"Content-Type": "video/mp4"})
        assert sync.status_code == 503 and sync.json()["error"]["code"] == "engine_unavailable"
        assert sync.json()["error"]["message"] == tracking["message"]


