"""Failure semantics with real processes: replicas that exit, are killed, run out of memory
or hang; a GPU that runs out of memory; clients that go away. Every job either finishes
with the same result as an undisturbed run or fails with its documented code.

One application serves every scenario: faults are configured server-side, by wrapping the
engine in the test-only fault-injection engine (``engine: faults``), and each one is aimed
at uploads of a given file name (tests pick the scenario by naming the upload).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import psutil
import pytest
import ray
from ray import serve

from deployments.failures import as_pipeline_error
from deployments.ingress import RayStages
from pose_pipeline.jobs.messages import ChunkTask
from pose_pipeline.errors import PipelineError
from pose_pipeline.video import DecodeOptions
from support.serve import VIDEO_SIZE

pytestmark = [pytest.mark.serve, pytest.mark.slow]

APP = "faults"  # on the shared cluster, after or before other modules' applications
SIZE = VIDEO_SIZE  # the videos of support.serve.demo_video
CHUNK_FRAMES = 10
CHUNK_TIMEOUT_S = 15  # past a replica's restart on a loaded two-core machine (2-5 s seen, detection included)
MEMORY_LIMIT = 1536 * 2**20

FAULTS = [
    {"kind": "exit", "chunk": 1, "filename": "exit-once.mp4", "times": 1},
    {"kind": "exit", "chunk": 1, "filename": "exit-always.mp4", "times": 3},
    {"kind": "host_oom", "chunk": 1, "filename": "host-oom-once.mp4", "times": 1},
    {"kind": "host_oom", "chunk": 1, "filename": "host-oom-always.mp4", "times": 3},
    {"kind": "gpu_oom", "chunk": 1, "filename": "gpu-oom-halve.mp4", "above_batch": 3, "times": 1},
    {"kind": "gpu_oom", "chunk": 1, "filename": "gpu-oom-fail.mp4", "above_batch": 0, "times": 1},
    {"kind": "hang", "chunk": 1, "filename": "hang.mp4", "times": 1},
    {"kind": "exit", "chunk": 0, "filename": "exit-direct.mp4", "times": 1},
    {"kind": "slow", "chunk": 1, "filename": "slow.mp4", "times": 4, "seconds": 6},
]


@pytest.fixture(scope="module")
def tmp_module(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def service(shared_cluster, serve_tools, tmp_module):
    store = tmp_module / "store"
    settings = {
        "decode": {"chunk_bytes": SIZE[0] * SIZE[1] * 3 * CHUNK_FRAMES, "max_side": None},
        "jobs": {"chunk_timeout_s": CHUNK_TIMEOUT_S, "max_chunk_retries": 2, "lease_s": 3},
        "tracking": {"memory_limit_bytes": MEMORY_LIMIT},
        "engine": {"name": "faults", "options": {"engine": "motion", "faults": FAULTS,
                                                 "state_dir": str(tmp_module / "faults")}},
        "store": {"root": str(store)},
    }
    checked = serve_tools.CHECKED
    deployments = {"Tracking": {**checked, "num_replicas": 2, "ray_actor_options": {"num_cpus": 0.05, "num_gpus": 0.5}},
                   "Decode": checked, "Aggregation": checked, "Ingress": checked}
    url = shared_cluster.deploy(APP, settings, deployments)
    with httpx.Client(base_url=url, timeout=180) as http:
        serve_tools.wait_until(lambda: serve_tools.is_ready(http), 120, 0.25, "the application")
        yield http, store


@pytest.fixture(scope="module")
def video(serve_tools, tmp_module) -> Path:
    return serve_tools.demo_video(tmp_module, "people", duration_s=4)


@pytest.fixture(scope="module")
def kill_video(serve_tools, tmp_module) -> Path:
    """30 chunks: replicas are killed after the third, the job goes on for the rest."""
    return serve_tools.demo_video(tmp_module, "kill", duration_s=20)


@pytest.fixture(scope="module")
def long_video(serve_tools, tmp_module) -> Path:
    """60 chunks: a synchronous request for it lasts past the client's read timeout."""
    return serve_tools.demo_video(tmp_module, "long", duration_s=40)


@pytest.fixture(scope="module")
def reference(serve_tools, video, tmp_module) -> dict:
    return serve_tools.offline_result(video, tmp_module / "reference.json")


@pytest.fixture(scope="module")
def kill_reference(serve_tools, kill_video, tmp_module) -> dict:
    return serve_tools.offline_result(kill_video, tmp_module / "kill-reference.json")


def _result(http: httpx.Client, job_id: str) -> dict:
    return http.get(f"/v1/jobs/{job_id}/result").json()


def _tracking_pids(serve_tools) -> set[int]:
    """The tracking replicas' PIDs, once both are up (an earlier test may have killed one)."""
    serve_tools.wait_until(lambda: len(serve_tools.replica_processes(APP, "Tracking")) == 2, 180, 0.5,
                           "two tracking replicas")
    return {p.pid for p in serve_tools.replica_processes(APP, "Tracking")}


def _run(serve_tools, http, video: Path, name: str) -> dict:
    return serve_tools.wait_job(http, serve_tools.submit(http, video, name=name)["job_id"], timeout_s=180)


def _kill_mid_job(serve_tools, http, video: Path, deployment: str) -> dict:
    """Start a long job, SIGKILL every replica of ``deployment`` after a few chunks."""
    job = serve_tools.submit(http, video, name=f"kill-{deployment}.mp4")
    serve_tools.wait_until(lambda: http.get(f"/v1/jobs/{job['job_id']}").json()["progress"]["chunks_done"] >= 3,
                           60, 0.05,
               "three chunks")
    victims = serve_tools.replica_processes(APP, deployment)
    assert victims, f"no {deployment} replica found"
    for process in victims:
        process.kill()
    psutil.wait_procs(victims, timeout=10)
    done = serve_tools.wait_job(http, job["job_id"], timeout_s=180)
    assert done["state"] == "succeeded", done
    return done


# 0. readiness while every tracking replica is busy --------------------------------------------


def test_readyz_answers_at_once_while_every_tracking_replica_is_busy(serve_tools, service, video, reference):
    # Four jobs whose chunk 1 takes 6 s longer keep both Tracking replicas (one request at a
    # time each) busy, with chunks queued: /readyz reads state, it does not queue behind them.
    http, _ = service
    _tracking_pids(serve_tools)
    jobs = [serve_tools.submit(http, video, name="slow.mp4") for _ in range(4)]

    def chunks_done() -> list[int]:
        return [http.get(f"/v1/jobs/{job['job_id']}").json()["progress"]["chunks_done"] for job in jobs]

    serve_tools.wait_until(lambda: min(chunks_done()) >= 1, 60, 0.1, "the first chunk of each job")
    answers = []
    for _ in range(4):
        started = time.monotonic()
        response = http.get("/readyz")
        answers.append((response.status_code, round(time.monotonic() - started, 2)))
        if response.status_code == 200:
            assert response.json()["deployments"]["Tracking"]["engine"]["name"] == "motion"
        time.sleep(0.3)
    assert 1 in chunks_done(), "the slow chunks ended before readiness was asked: nothing was queued"
    assert all(status == 200 and seconds < 2.5 for status, seconds in answers), answers
    for job in jobs:
        done = serve_tools.wait_job(http, job["job_id"], timeout_s=180)
        assert done["state"] == "succeeded", done["error"]
        assert _result(http, job["job_id"]) == reference


# 1. a tracking replica dies ----------------------------------------------------------------


def test_replica_exit_mid_job_resumes_with_identical_result(serve_tools, service, video, reference):
    http, _ = service
    done = _run(serve_tools, http, video, "exit-once.mp4")
    assert done["state"] == "succeeded" and done["retries"] == 1, done
    assert _result(http, done["job_id"]) == reference


def test_tracking_replicas_killed_from_outside(serve_tools, service, kill_video, kill_reference):
    # Killed while a chunk runs, the chunk is retried; killed between chunks, the next chunk
    # waits for the replacements. Either way the new replicas restore the checkpoint.
    http, _ = service
    before = _tracking_pids(serve_tools)
    done = _kill_mid_job(serve_tools, http, kill_video, "Tracking")
    assert _result(http, done["job_id"]) == kill_reference
    assert not before & {p.pid for p in serve_tools.replica_processes(APP, "Tracking")}


def test_repeated_deaths_fail_with_worker_died_and_503(service, video):
    http, _ = service
    response = http.post("/v1/track", params={"filename": "exit-always.mp4"}, content=video.read_bytes(),
                         headers={"Content-Type": "video/mp4"})
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "worker_died" and error["attempts"] == 3 and error["chunk"] == 1
    assert response.headers["Retry-After"]


# 2. host out of memory ---------------------------------------------------------------------


def test_memory_limit_fails_the_chunk_before_anything_is_killed(serve_tools, service, video, reference):
    http, _ = service
    pids = _tracking_pids(serve_tools)
    done = _run(serve_tools, http, video, "host-oom-once.mp4")
    assert done["state"] == "succeeded" and done["retries"] == 1
    assert _result(http, done["job_id"]) == reference
    failed = _run(serve_tools, http, video, "host-oom-always.mp4")
    assert failed["state"] == "failed" and failed["error"]["code"] == "out_of_memory"
    assert "tracking.memory_limit_bytes" in failed["error"]["message"]
    assert failed["error"]["limit_bytes"] == MEMORY_LIMIT
    assert _tracking_pids(serve_tools) == pids, "a replica was killed"


# 3. CUDA out of memory ---------------------------------------------------------------------


def test_gpu_oom_halves_the_batch_and_gives_the_same_result(serve_tools, service, video, reference):
    http, _ = service
    done = _run(serve_tools, http, video, "gpu-oom-halve.mp4")
    assert done["state"] == "succeeded" and done["retries"] == 0
    assert _result(http, done["job_id"]) == reference


def test_gpu_oom_at_batch_one_fails_the_job_and_the_replica_stays(serve_tools, service, video, reference):
    http, _ = service
    pids = _tracking_pids(serve_tools)
    failed = _run(serve_tools, http, video, "gpu-oom-fail.mp4")
    assert failed["state"] == "failed" and failed["error"]["code"] == "gpu_out_of_memory"
    assert failed["error"]["batch_size"] == 1 and failed["retries"] == 0
    after = _run(serve_tools, http, video, "after-gpu-oom.mp4")
    assert after["state"] == "succeeded" and _result(http, after["job_id"]) == reference
    assert _tracking_pids(serve_tools) == pids


# 4. hang -----------------------------------------------------------------------------------


def test_hung_chunk_times_out_and_the_replica_is_replaced(serve_tools, service, video, reference):
    http, _ = service
    before = _tracking_pids(serve_tools)
    done = _run(serve_tools, http, video, "hang.mp4")
    assert done["state"] == "succeeded" and done["retries"] == 1, done
    assert _result(http, done["job_id"]) == reference
    # The replica stuck in the hung chunk fails its health check and is replaced.
    serve_tools.wait_until(lambda: len(before - {p.pid for p in serve_tools.replica_processes(APP, "Tracking")})
                           == 1, 120, 0.5,
               "the hung replica to be replaced")
    _tracking_pids(serve_tools)


# 5, 6. decode, aggregation and ingress replicas die ----------------------------------------


@pytest.mark.parametrize("deployment", ["Decode", "Aggregation", "Ingress"])
def test_other_replicas_killed_mid_job(serve_tools, service, kill_video, kill_reference, deployment):
    http, _ = service
    done = _kill_mid_job(serve_tools, http, kill_video, deployment)
    assert _result(http, done["job_id"]) == kill_reference


def test_a_chunk_lost_with_its_owner_is_a_worker_death():
    # What Ray raises in the tracking replica when the Decode replica that owned the chunk is gone.
    lost = ray.exceptions.OwnerDiedError("ab" * 14, None, "")
    error = as_pipeline_error(lost)
    assert (error.code, error.retryable) == ("worker_died", True)


def test_a_chunk_decoded_ahead_is_lost_with_its_decode_replica(serve_tools, service, video):
    # The runner asks for the next chunk while one is tracked, and the Decode replica owns that
    # chunk in the object store. Killed before the chunk is tracked: Ray may still serve the
    # chunk from the node's store (what it did here), or report it lost; then the tracking call
    # must fail with the retryable worker_died (the runner decodes it again), nothing else.
    http, store = service
    decoding = DecodeOptions(chunk_bytes=SIZE[0] * SIZE[1] * 3 * CHUNK_FRAMES)
    try:
        with serve_tools.first_chunk_task(store, video, decoding, "ahead.mp4") as task:
            ahead = serve.get_deployment_handle("Decode", APP).decode.remote(task).result(timeout_s=60)
            victims = serve_tools.replica_processes(APP, "Decode")
            for process in victims:
                process.kill()
            psutil.wait_procs(victims, timeout=10)
            try:
                tracked = serve.get_deployment_handle("Tracking", APP).track.remote(ahead).result(timeout_s=60)
            except Exception as exc:
                assert as_pipeline_error(exc).code == "worker_died", exc
            else:
                assert (tracked.task.chunk_index, tracked.frames) == (0, CHUNK_FRAMES)
    finally:
        serve_tools.wait_until(lambda: serve_tools.is_ready(http), 120, 0.25, "a new Decode replica")


def test_a_tracking_replica_dying_mid_chunk_is_a_worker_death(serve_tools, service, video):
    # What the runner sees when the tracking replica exits during its chunk: RayStages.track
    # (the ingress's path) must raise the retryable worker_died, which the runner retries.
    http, store = service
    decoding = DecodeOptions(chunk_bytes=SIZE[0] * SIZE[1] * 3 * CHUNK_FRAMES)
    stages = RayStages(*(serve.get_deployment_handle(name, APP) for name in ("Decode", "Tracking", "Aggregation")))
    try:
        with serve_tools.first_chunk_task(store, video, decoding, "exit-direct.mp4") as task:
            with pytest.raises(PipelineError) as raised:
                asyncio.run(_decode_and_track(stages, task))
        assert (raised.value.code, raised.value.retryable) == ("worker_died", True), raised.value
    finally:
        serve_tools.wait_until(lambda: serve_tools.is_ready(http), 120, 0.25, "a new Tracking replica")


async def _decode_and_track(stages: RayStages, task: ChunkTask) -> None:
    await stages.track(await stages.decode(task))


# 9. clients that go away -------------------------------------------------------------------


def test_client_disconnect_mid_upload_leaves_nothing(serve_tools, service):
    http, store = service

    def body():
        for _ in range(30):
            yield b"\x00" * 100_000
        raise ConnectionAbortedError("client gave up")

    with pytest.raises(Exception):  # noqa: B017 - whatever the transport makes of the failing body
        http.post("/v1/jobs", content=body(), headers={"Content-Type": "video/mp4"})
    serve_tools.wait_until(lambda: serve_tools.spool_files(store) == [], 20, 0.2, "the spool to be empty")


def test_client_disconnect_mid_sync_request_cancels_the_job(serve_tools, service, long_video):
    http, store = service
    with pytest.raises(httpx.ReadTimeout):
        http.post("/v1/track", params={"filename": "walk-away.mp4"}, content=long_video.read_bytes(),
                  headers={"Content-Type": "video/mp4"}, timeout=httpx.Timeout(60, read=1.5))
    jobs = serve_tools.job_store(store)

    def cancelled():
        mine = [r for r in jobs.recent() if r.filename == "walk-away.mp4"]
        return mine and mine[0].state.value == "cancelled" and mine[0]

    record = serve_tools.wait_until(cancelled, 30, 0.3, "the job to be cancelled")
    assert record.frames_done < record.frames_total
    assert not (store / "jobs" / record.id).exists()
