"""The Serve application over real HTTP on a local Ray cluster with a fake GPU.

Four applications share the module's cluster:
- "pose" at /: two 0.5-GPU tracking replicas of the motion engine (the synthetic videos are
  its ground truth);
- "strict" at /strict: bearer tokens, small limits, short TTL, a queue of one;
- "broken" at /broken: an engine that cannot load (the upstream PHALP stack is absent);
- "cpu" at /cpu: the embedded default engine, blazepose, on a real clip.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import psutil
import pytest
import ray
from ray import serve

import media
from pose_pipeline import synthetic
from pose_pipeline.clips import CARPHONE, clip
from pose_pipeline.client import Client
from pose_pipeline.video import DecodeOptions
from serve_helpers import (ServeCluster, first_chunk_task, is_ready, offline_result, part_files, replica_processes,
                           spool_files, submit, wait_job, wait_until)

pytestmark = [pytest.mark.serve, pytest.mark.slow]

TOKEN = "s3cret-token"
CHUNK_FRAMES = 12
SIZE = (320, 180)


@pytest.fixture(scope="module")
def tmp_module(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("service")


@pytest.fixture(scope="module")
def cluster(tmp_module):
    chunk_bytes = SIZE[0] * SIZE[1] * 3 * CHUNK_FRAMES
    common = {"decode": {"chunk_bytes": chunk_bytes, "max_side": None}, "jobs": {"lease_s": 5}}
    main_store, strict_store = tmp_module / "store", tmp_module / "strict-store"
    cluster = ServeCluster(num_gpus=1).start()
    try:
        cluster.deploy("pose", {**common, "store": {"root": str(main_store)}},
                       {"Tracking": {"num_replicas": 2, "ray_actor_options": {"num_cpus": 0.05, "num_gpus": 0.5}}})
        cluster.deploy("strict", {
            **common, "store": {"root": str(strict_store)}, "auth": {"tokens": [TOKEN]},
            "limits": {"max_upload_bytes": 2_000_000, "max_body_bytes": 1_000_000, "max_part_bytes": 100_000,
                       "max_width": 400, "max_height": 400, "max_duration_s": 8},
            "jobs": {"lease_s": 5, "ttl_s": 2, "max_running": 1, "max_queued": 1},
        }, route_prefix="/strict")
        cluster.deploy("broken", {**common, "store": {"root": str(tmp_module / "broken-store")},
                                  "engine": {"name": "phalp"}}, route_prefix="/broken")
        cluster.deploy("cpu", {"decode": {"max_side": None}, "store": {"root": str(tmp_module / "cpu-store")},
                               "engine": {"name": "blazepose"}}, route_prefix="/cpu")
        cluster.stores = {"pose": main_store, "strict": strict_store}
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def http(cluster):
    with httpx.Client(base_url=cluster.url(), timeout=120) as client:
        wait_until(lambda: is_ready(client), 120, 1, "the application to be ready")
        yield client


@pytest.fixture(scope="module")
def strict(cluster, http):
    with httpx.Client(base_url=cluster.url("/strict"), timeout=60,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        wait_until(lambda: is_ready(client), 60, 1, "the strict application")
        yield client


@pytest.fixture(scope="module")
def video(tmp_module) -> Path:
    scene = synthetic.demo_scene(duration_s=4, size=SIZE, fps=15)
    return synthetic.write_video(tmp_module / "people.mp4", scene)


# --- results --------------------------------------------------------------------------------


def test_blazepose_job_gives_the_skeletons_the_cli_gives(cluster, http, tmp_path):
    """The default engine through the service: the man in carphone, one track, 33 joints in
    every frame, the same result as ``pose-pipeline track``."""
    video = clip(CARPHONE)
    with httpx.Client(base_url=cluster.url("/cpu"), timeout=120) as cpu:
        wait_until(lambda: is_ready(cpu), 120, 1, "the blazepose application")
        done = wait_job(cpu, submit(cpu, video)["job_id"])
        assert done["state"] == "succeeded", done
        served = cpu.get(f"/v1/jobs/{done['job_id']}/result").json()
    assert served == offline_result(video, tmp_path / "offline.json", engine="blazepose")
    assert served["engine"]["name"] == "blazepose" and len(served["tracks"]) == 1
    assert all(len(f["people"]) == 1 and len(f["people"][0]["joints_2d"]) == 33 for f in served["frames"])


def test_http_result_equals_offline_cli(http, video, tmp_path):
    job = submit(http, video)
    assert job["state"] in ("queued", "running") and job["urls"]["result"].endswith("/result")
    done = wait_job(http, job["job_id"])
    assert done["state"] == "succeeded", done
    assert done["progress"]["frames_done"] == done["progress"]["frames_total"] == 60
    served = http.get(f"/v1/jobs/{job['job_id']}/result").json()
    assert served == offline_result(video, tmp_path / "offline.json")
    assert len(served["tracks"]) >= 2


def test_sync_track_multipart_gives_npz(http, video, tmp_path):
    response = http.post("/v1/track", params={"format": "npz"},
                         files={"file": ("people.mp4", video.read_bytes(), "video/mp4")}, data={"fps": "5"})
    assert response.status_code == 200, response.text
    (tmp_path / "served.npz").write_bytes(response.content)
    from pose_pipeline.serialize import read_npz, read_json
    served = read_npz(tmp_path / "served.npz")
    offline_result(video, tmp_path / "offline.json", "--fps", "5")
    assert served.to_dict() == read_json(tmp_path / "offline.json").to_dict()
    assert len(served.frames) == 20


def test_events_stream_progress_until_the_end(http, video):
    job = submit(http, video)
    states = []
    with http.stream("GET", f"/v1/jobs/{job['job_id']}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                states.append(json.loads(line[6:]))
    assert states[-1]["state"] == "succeeded"
    done = [s["progress"]["frames_done"] for s in states]
    assert done == sorted(done) and done[-1] == 60


def test_concurrent_jobs_all_succeed_on_both_tracking_replicas(http, cluster, video):
    jobs = [submit(http, video, name=f"concurrent-{i}.mp4") for i in range(4)]
    results = [wait_job(http, job["job_id"]) for job in jobs]
    assert [r["state"] for r in results] == ["succeeded"] * 4
    logs = sorted(cluster.serve_logs.glob("replica_pose_Tracking_*.log"))
    ids = {job["job_id"] for job in jobs}
    worked = [log for log in logs if any(f"\"pose_job_id\": \"{i}\"" in log.read_text() for i in ids)]
    assert len(replica_processes("pose", "Tracking")) == 2
    assert len(worked) == 2, f"only {len(worked)} of the tracking replicas got chunks"


# --- uploads --------------------------------------------------------------------------------


def _front_processes(port: int) -> list[psutil.Process]:
    """The ingress replicas and the Serve proxy listening on ``port``: what an upload passes."""
    proxies = [p for p in psutil.process_iter(["cmdline"]) if "ray::ProxyActor" in " ".join(p.info["cmdline"] or [])
               and any(c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in p.net_connections("tcp"))]
    assert len(proxies) == 1
    return proxies + replica_processes("pose", "Ingress")


def _private_bytes(process: psutil.Process) -> int:
    """Resident memory of the process's own (RssAnon). Its RSS also counts the pages of Ray's
    shared object store it has touched, which the proxy's messages to the replica pass
    through: bounded by the store's size, and the node's, not the process's."""
    with open(f"/proc/{process.pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("RssAnon:"))


def test_large_upload_in_parts_stays_in_bounded_memory(http, cluster):
    """300 MiB in parts of limits.max_part_bytes (16 MiB by default): neither the proxy nor the
    ingress holds more than a couple of parts. (A body sent in one request is held whole by
    both, measured +300 MiB for 300 MiB: docs/api.md.)"""
    size, part = 300 * 2**20, bytes(range(256)) * (16 * 2**20 // 256)  # not a video
    processes = _front_processes(cluster.port)
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
    assert spool_files(cluster.stores["pose"]) == [] and part_files(cluster.stores["pose"]) == []


def test_result_of_an_upload_in_parts_equals_offline_cli(cluster, video, tmp_path):
    with Client(cluster.url()) as client:
        job = client.submit(video, part_bytes=64 * 1024)  # several parts
        assert job["filename"] == video.name
        client.wait(job["job_id"])
        served = client.download(job["job_id"], tmp_path / "served.json")
    assert json.loads(served.read_text()) == offline_result(video, tmp_path / "offline.json")
    assert part_files(cluster.stores["pose"]) == []


def test_cli_submit_waits_and_writes_the_result(cluster, video, tmp_path):
    out = tmp_path / "cli.json"
    done = subprocess.run([sys.executable, "-m", "pose_pipeline.cli", "submit", str(video), "--url", cluster.url(),
                           "--wait", "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "100%" in done.stderr and f"{out}: written" in done.stderr
    assert json.loads(out.read_text()) == offline_result(video, tmp_path / "offline.json")


def test_a_part_cut_by_the_client_is_dropped_and_the_upload_resumes(http, cluster, video):
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

    wait_until(send_first_half, 30, 0.5, "the cut part to be dropped")
    _assert_error(http.put(url, params={"offset": 0}, content=data[half:]), 409, "upload_conflict")
    assert http.get(url).json()["offset"] == half
    _assert_error(http.post("/v1/jobs", params={"upload": upload["id"]}), 409, "upload_conflict")
    assert http.put(url, params={"offset": half}, content=data[half:]).json()["offset"] == len(data)
    tracked = http.post("/v1/track", params={"upload": upload["id"], "fps": "5"})  # the synchronous endpoint
    assert tracked.status_code == 200, tracked.text
    assert len(tracked.json()["frames"]) == 20


def test_upload_in_parts_errors(strict, http, cluster, video):
    _assert_error(strict.post("/v1/uploads", params={"size": 2_000_001}), 413, "file_too_large")
    upload = strict.post("/v1/uploads").json()
    url = f"/v1/uploads/{upload['id']}"
    too_big = strict.put(url, params={"offset": 0}, content=b"x" * (upload["max_part_bytes"] + 1))
    _assert_error(too_big, 413, "part_too_large")
    assert too_big.json()["error"]["limit_bytes"] == upload["max_part_bytes"] == 100_000
    _assert_error(strict.put(url, params={"offset": 5}, content=b"x"), 409, "upload_conflict")
    _assert_error(strict.post("/v1/jobs", params={"upload": upload["id"]}), 400, "empty_file")
    assert strict.delete(url).json()["deleted"] is True
    _assert_error(strict.get(url), 404, "upload_not_found")
    _assert_error(strict.post("/v1/jobs", params={"upload": "f" * 32}), 404, "upload_not_found")
    _assert_error(httpx.post(cluster.url("/strict/v1/uploads")), 401, "unauthorized")
    other = http.post("/v1/uploads").json()
    _assert_error(http.post("/v1/jobs", params={"upload": other["id"]}, content=video.read_bytes()),
                  400, "invalid_request")
    http.delete(f"/v1/uploads/{other['id']}")
    assert part_files(cluster.stores["strict"]) == part_files(cluster.stores["pose"]) == []


def test_over_limit_upload_gets_413_and_leaves_nothing(strict, cluster):
    # Chunked (no Content-Length): the ingress counts while writing and stops at the limit.
    # Serve's HTTP proxy reads the rest of the body regardless (see docs/failures.md).
    body = (b"x" * 100_000 for _ in range(400))  # 40 MB offered against a 1 MB limit for one request
    response = strict.post("/v1/jobs", content=body, headers={"Content-Type": "video/mp4"})
    _assert_error(response, 413, "file_too_large")
    assert response.json()["error"]["limit_bytes"] == 1_000_000
    assert "in parts" in response.json()["error"]["message"]
    declared = strict.post("/v1/jobs", content=b"x" * 1_000_001, headers={"Content-Type": "video/mp4"})
    assert declared.status_code == 413
    # In parts, up to limits.max_upload_bytes:
    upload = strict.post("/v1/uploads").json()
    for offset in range(0, 2_000_000, 100_000):
        strict.put(f"/v1/uploads/{upload['id']}", params={"offset": offset}, content=b"x" * 100_000)
    over = strict.put(f"/v1/uploads/{upload['id']}", params={"offset": 2_000_000}, content=b"x")
    _assert_error(over, 413, "file_too_large")
    assert over.json()["error"]["limit_bytes"] == 2_000_000
    _assert_error(strict.post("/v1/jobs", params={"upload": upload["id"]}), 415, "not_a_media_file")
    assert spool_files(cluster.stores["strict"]) == part_files(cluster.stores["strict"]) == []


# --- job lifecycle ---------------------------------------------------------------------------


def test_cancel_stops_the_work_and_deletes_files(http, cluster, tmp_path):
    long_video = synthetic.write_video(tmp_path / "long.mp4", synthetic.demo_scene(duration_s=40, size=SIZE, fps=15))
    job = submit(http, long_video)
    wait_until(lambda: http.get(f"/v1/jobs/{job['job_id']}").json()["progress"]["chunks_done"] >= 1, 60,
               what="the first chunk")
    cancelled = http.delete(f"/v1/jobs/{job['job_id']}").json()
    assert cancelled["state"] == "cancelled" and cancelled["error"]["code"] == "cancelled"
    done_at_cancel = cancelled["progress"]["frames_done"]
    assert done_at_cancel < 600
    time.sleep(1.5)
    after = http.get(f"/v1/jobs/{job['job_id']}").json()
    assert after["state"] == "cancelled" and after["progress"]["frames_done"] == done_at_cancel
    assert not any((cluster.stores["pose"] / "jobs" / job["job_id"]).iterdir()) \
        if (cluster.stores["pose"] / "jobs" / job["job_id"]).exists() else True
    assert http.get(f"/v1/jobs/{job['job_id']}/result").status_code == 409


def test_finished_jobs_expire_after_their_ttl(strict, cluster, video):
    job = submit(strict, video)
    assert wait_job(strict, job["job_id"])["state"] == "succeeded"
    wait_until(lambda: strict.get(f"/v1/jobs/{job['job_id']}").status_code == 404, 15, 0.5, "expiry")
    assert not (cluster.stores["strict"] / "jobs" / job["job_id"]).exists()


def test_auth_required_when_tokens_are_configured(cluster, video):
    with httpx.Client(base_url=cluster.url("/strict"), timeout=30) as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            response = anonymous.post("/v1/jobs", content=video.read_bytes(),
                                      headers={"Content-Type": "video/mp4", **headers})
            assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
            assert anonymous.get("/v1/jobs/0123abcd", headers=headers).status_code == 401


def test_overload_answers_503_with_retry_after_and_accepted_jobs_finish(strict, video):
    accepted, refused = [], []
    for i in range(6):  # bounded: six requests on loopback
        response = strict.post("/v1/jobs", params={"filename": f"load-{i}.mp4"}, content=video.read_bytes(),
                               headers={"Content-Type": "video/mp4"})
        (accepted if response.status_code == 202 else refused).append(response)
    assert refused, "no request was refused past a queue of one"
    for response in refused:
        assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
        assert response.json()["error"]["code"] == "overloaded"
    assert [wait_job(strict, r.json()["job_id"])["state"] for r in accepted] == ["succeeded"] * len(accepted)


def test_a_decode_replica_decodes_no_more_chunks_at_once_than_its_cpus(http, cluster, video):
    # A replica takes no more CPU than it reserves (less than one here: one decode at a time).
    # It gets four whole-video chunks at once: decoded one at a time, the decodes' own
    # durations add up to no more than the wall time of all four (before: 3x as much).
    decoding = DecodeOptions(chunk_bytes=2**30)
    decode = serve.get_deployment_handle("Decode", "pose").decode
    with ExitStack() as stack:
        tasks = [stack.enter_context(first_chunk_task(cluster.stores["pose"], video, decoding, f"at-once-{i}.mp4"))
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


def test_engine_that_cannot_load_is_never_ready_and_says_why(cluster, http, video):
    with httpx.Client(base_url=cluster.url("/broken"), timeout=60) as broken:
        response = wait_until(lambda: broken.get("/readyz"), 60, what="the broken app's ingress")
        assert response.status_code == 503
        tracking = response.json()["error"]["deployments"]["Tracking"]
        assert tracking["code"] == "engine_unavailable" and "phalp" in tracking["message"]
        sync = broken.post("/v1/track", content=video.read_bytes(), headers={"Content-Type": "video/mp4"})
        assert sync.status_code == 503 and sync.json()["error"]["code"] == "engine_unavailable"
        assert sync.json()["error"]["message"] == tracking["message"]


# --- bad input --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_files(tmp_module) -> dict[str, Path]:
    folder = tmp_module / "bad"
    folder.mkdir()
    text = folder / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    truncated = media.truncate(media.write_video(folder / "cut.mp4", size=(160, 120), frames=60), 0.5)
    # index first (faststart), so that the damage is in the frames, found only while decoding
    damaged = media.corrupt_middle(media.write_video(folder / "damaged.mp4", size=(160, 120), frames=90, gop=10,
                                                     container_options={"movflags": "faststart"}),
                                   length=4096, at=0.6)
    return {
        "text": text,
        "audio": media.write_audio_only(folder / "audio.m4a"),
        "truncated": truncated,
        "damaged": damaged,
        "ffv1": media.write_video(folder / "lossless.mkv", codec="ffv1", size=(64, 48), frames=5),
        "wide": media.write_video(folder / "wide.mp4", size=(640, 128), frames=5),
        "long": media.write_video(folder / "long.mp4", size=(64, 48), fps=2, frames=20),
    }


def _post(client: httpx.Client, body: bytes, content_type: str = "video/mp4", **params) -> httpx.Response:
    return client.post("/v1/jobs", content=body, params=params, headers={"Content-Type": content_type})


def _assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


@pytest.mark.parametrize("case, status, code", [
    ("empty", 400, "empty_file"),
    ("text", 415, "not_a_media_file"),
    ("audio", 422, "no_video_stream"),
    ("truncated", 422, "corrupt_video"),
    ("ffv1", 415, "unsupported_codec"),
    ("json_body", 415, "unsupported_media_type"),
    ("malformed_multipart", 400, "invalid_request"),
    ("path_instead_of_file", 400, "invalid_request"),
    ("url_as_body", 400, "invalid_request"),
    ("unknown_option", 422, "invalid_option"),
    ("bad_option_value", 422, "invalid_option"),
])
def test_bad_uploads_get_their_documented_error_and_leave_nothing(http, cluster, bad_files, video, case, status,
                                                                   code):
    if case == "empty":
        response = _post(http, b"")
    elif case in ("text", "audio", "truncated", "ffv1"):
        response = _post(http, bad_files[case].read_bytes())
    elif case == "json_body":
        response = _post(http, b'{"video": "people.mp4"}', "application/json")
    elif case == "malformed_multipart":
        response = _post(http, b"--xyz\r\nnot a header\r\n\r\nbody", "multipart/form-data; boundary=xyz")
    elif case == "path_instead_of_file":
        response = http.post("/v1/jobs", data={"file": "/etc/passwd"}, files={"other": ("x", b"1")})
    elif case == "url_as_body":
        response = _post(http, b"https://example.com/video.mp4", "application/octet-stream")
    elif case == "unknown_option":
        response = _post(http, video.read_bytes(), path="/srv/videos/a.mp4")
    else:
        response = _post(http, video.read_bytes(), fps="-3")
    _assert_error(response, status, code)
    assert spool_files(cluster.stores["pose"]) == []


def test_limits_of_the_strict_app(strict, cluster, bad_files):
    _assert_error(_post(strict, bad_files["wide"].read_bytes()), 422, "resolution_too_large")
    _assert_error(_post(strict, bad_files["long"].read_bytes()), 422, "duration_too_long")
    assert spool_files(cluster.stores["strict"]) == []


def test_damage_found_while_decoding_fails_the_job_with_its_position(http, bad_files):
    job = submit(http, bad_files["damaged"])  # the header and first frame are fine: accepted
    done = wait_job(http, job["job_id"])
    assert done["state"] == "failed" and done["error"]["code"] == "corrupt_video", done
    assert done["error"]["frame"] > 0 and done["error"]["time_s"] > 0
    _assert_error(http.get(f"/v1/jobs/{job['job_id']}/result"), 409, "job_not_finished")


def test_unknown_ids_routes_and_formats(http, video):
    _assert_error(http.get("/v1/jobs/0123456789abcdef"), 404, "job_not_found")
    traversal = http.get("/v1/jobs/..%2F..%2Fetc")
    assert traversal.status_code == 404 and traversal.json()["error"]["code"] in ("not_found", "job_not_found")
    _assert_error(http.delete("/v1/jobs/0123456789abcdef"), 404, "job_not_found")
    assert http.get("/v2/nothing").json()["error"]["code"] == "not_found"
    _assert_error(http.post("/v1/track", params={"format": "xml"}, content=video.read_bytes(),
                            headers={"Content-Type": "video/mp4"}), 422, "invalid_option")
    job = wait_job(http, submit(http, video, formats="json")["job_id"])
    _assert_error(http.get(f"/v1/jobs/{job['job_id']}/result", params={"format": "npz"}), 422, "invalid_option")
    assert http.delete(f"/v1/jobs/{job['job_id']}").json()["deleted"] is True
    _assert_error(http.get(f"/v1/jobs/{job['job_id']}"), 404, "job_not_found")
