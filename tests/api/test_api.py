"""The HTTP API in this process, without Ray: the real app (``api.create_app``) in front of
the real job service, with real local stages (decoding with PyAV, the motion engine, the
aggregation) on a real store, through Starlette's ``TestClient``. What only Ray can show
(replicas, kills, placement, the proxy) is in test_service.py and test_faults.py.

Two apps share the module:
- ``local``: the motion engine (the synthetic videos are its ground truth);
- ``strict``: bearer tokens, small limits, short TTL, a queue of one.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from pose_pipeline.assets import synthetic
from pose_pipeline.client import Client
from pose_pipeline.results.writers import read_json, read_npz

TOKEN = "s3cret-token"
CHUNK_FRAMES = 12
SIZE = (320, 180)
COMMON = {"decode": {"chunk_bytes": SIZE[0] * SIZE[1] * 3 * CHUNK_FRAMES, "max_side": None}, "jobs": {"lease_s": 5}}


@pytest.fixture(scope="module")
def tmp_module(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("api")


@pytest.fixture(scope="module")
def stores(tmp_module) -> dict[str, Path]:
    return {"local": tmp_module / "store", "strict": tmp_module / "strict-store"}


@pytest.fixture(scope="module")
def local(local_api, stores):
    return local_api({**COMMON, "store": {"root": str(stores["local"])}})


@pytest.fixture(scope="module")
def strict(local_api, stores):
    return local_api({
        **COMMON, "store": {"root": str(stores["strict"])}, "auth": {"tokens": [TOKEN]},
        "limits": {"max_upload_bytes": 2_000_000, "max_body_bytes": 1_000_000, "max_part_bytes": 100_000,
                   "max_width": 400, "max_height": 400, "max_duration_s": 8},
        "jobs": {"lease_s": 5, "ttl_s": 2, "max_running": 1, "max_queued": 1},
    }, headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture(scope="module")
def anonymous(strict):
    """The strict app without the token: a client of its own on the same app (the transport
    holds the running app; a second TestClient would start a second service)."""
    with httpx.Client(transport=strict._transport, base_url=str(strict.base_url)) as client:
        yield client


@pytest.fixture(scope="module")
def video(tmp_module) -> Path:
    scene = synthetic.demo_scene(duration_s=4, size=SIZE, fps=15)
    return synthetic.write_video(tmp_module / "people.mp4", scene)


def _post(client: httpx.Client, body: bytes, content_type: str = "video/mp4", **params) -> httpx.Response:
    return client.post("/v1/jobs", content=body, params=params, headers={"Content-Type": content_type})


def _assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


# --- results --------------------------------------------------------------------------------


@pytest.mark.slow
def test_http_result_equals_offline_cli(api, local, video, tmp_path):
    job = api.submit(local, video)
    assert job["state"] in ("queued", "running") and job["urls"]["result"].endswith("/result")
    done = api.wait_job(local, job["job_id"])
    assert done["state"] == "succeeded", done
    assert done["progress"]["frames_done"] == done["progress"]["frames_total"] == 60
    served = local.get(f"/v1/jobs/{job['job_id']}/result").json()
    assert served == api.offline_result(video, tmp_path / "offline.json")
    assert len(served["tracks"]) >= 2


@pytest.mark.slow
def test_sync_track_multipart_gives_npz(api, local, video, tmp_path):
    response = local.post("/v1/track", params={"format": "npz"},
                          files={"file": ("people.mp4", video.read_bytes(), "video/mp4")}, data={"fps": "5"})
    assert response.status_code == 200, response.text
    (tmp_path / "served.npz").write_bytes(response.content)
    served = read_npz(tmp_path / "served.npz")
    api.offline_result(video, tmp_path / "offline.json", "--fps", "5")
    assert served.to_dict() == read_json(tmp_path / "offline.json").to_dict()
    assert len(served.frames) == 20


@pytest.mark.slow
def test_events_stream_progress_until_the_end(api, local, video):
    job = api.submit(local, video)
    states = []
    with local.stream("GET", f"/v1/jobs/{job['job_id']}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                states.append(json.loads(line[6:]))
    assert states[-1]["state"] == "succeeded"
    done = [s["progress"]["frames_done"] for s in states]
    assert done == sorted(done) and done[-1] == 60


def test_the_client_reads_the_servers_models(local, video):
    # The client's answers are the server's view models, parsed from the same JSON.
    with Client(http=local) as client:
        job = client.submit(video, fps=5, formats=["json"])
        done = client.wait(job.job_id)
        assert (done.state, done.options.fps, done.options.formats) == ("succeeded", 5.0, ("json",))
        assert done.to_json() == local.get(f"/v1/jobs/{job.job_id}").json() | {"timings": done.timings.to_json()}
        assert set(done.results) == {"json"} and done.urls.self_.endswith(job.job_id)


# --- uploads --------------------------------------------------------------------------------


@pytest.mark.slow
def test_result_of_an_upload_in_parts_equals_offline_cli(api, local, stores, video, tmp_path):
    with Client(http=local) as client:
        job = client.submit(video, part_bytes=64 * 1024)  # several parts
        assert job.filename == video.name
        client.wait(job.job_id)
        served = client.download(job.job_id, tmp_path / "served.json")
    assert json.loads(served.read_text()) == api.offline_result(video, tmp_path / "offline.json")
    assert api.part_files(stores["local"]) == []


def test_upload_in_parts_errors(api, strict, anonymous, local, stores, video):
    _assert_error(strict.post("/v1/uploads", params={"size": 2_000_001}), 413, "file_too_large")
    upload = strict.post("/v1/uploads").json()
    url = f"/v1/uploads/{upload['id']}"
    too_big = strict.put(url, params={"offset": 0}, content=b"x" * (upload["max_part_bytes"] + 1))
    _assert_error(too_big, 413, "part_too_large")
    assert too_big.json()["error"]["limit_bytes"] == upload["max_part_bytes"] == 100_000
    _assert_error(strict.put(url, params={"offset": 5}, content=b"x"), 409, "upload_conflict")
    for offset in (None, "-1", "2.5", "x"):  # the query parameters read in one style (api/params.py)
        bad = strict.put(url, params={} if offset is None else {"offset": offset}, content=b"x")
        _assert_error(bad, 422, "invalid_option")
        assert bad.json()["error"]["option"] == "offset" and "whole number" in bad.json()["error"]["message"]
    _assert_error(strict.post("/v1/uploads", params={"size": "-3"}), 422, "invalid_option")
    _assert_error(strict.post("/v1/jobs", params={"upload": upload["id"]}), 400, "empty_file")
    assert strict.delete(url).json()["deleted"] is True
    _assert_error(strict.get(url), 404, "upload_not_found")
    _assert_error(strict.post("/v1/jobs", params={"upload": "f" * 32}), 404, "upload_not_found")
    _assert_error(anonymous.post("/v1/uploads"), 401, "unauthorized")
    other = local.post("/v1/uploads").json()
    _assert_error(local.post("/v1/jobs", params={"upload": other["id"]}, content=video.read_bytes()),
                  400, "invalid_request")
    local.delete(f"/v1/uploads/{other['id']}")
    assert api.part_files(stores["strict"]) == api.part_files(stores["local"]) == []


def test_over_limit_upload_gets_413_and_leaves_nothing(api, strict, stores):
    # Chunked (no Content-Length): the service counts while writing and stops at the limit.
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
    assert api.spool_files(stores["strict"]) == api.part_files(stores["strict"]) == []


# --- job lifecycle ---------------------------------------------------------------------------


@pytest.mark.slow
def test_cancel_stops_the_work_and_deletes_files(api, local, stores, tmp_path):
    long_video = synthetic.write_video(tmp_path / "long.mp4", synthetic.demo_scene(duration_s=40, size=SIZE, fps=15))
    job = api.submit(local, long_video)
    api.wait_until(lambda: local.get(f"/v1/jobs/{job['job_id']}").json()["progress"]["chunks_done"] >= 1, 60,
                   what="the first chunk")
    cancelled = local.delete(f"/v1/jobs/{job['job_id']}").json()
    assert cancelled["state"] == "cancelled" and cancelled["error"]["code"] == "cancelled"
    done_at_cancel = cancelled["progress"]["frames_done"]
    assert done_at_cancel < 600
    time.sleep(1.5)
    after = local.get(f"/v1/jobs/{job['job_id']}").json()
    assert after["state"] == "cancelled" and after["progress"]["frames_done"] == done_at_cancel
    assert not any((stores["local"] / "jobs" / job["job_id"]).iterdir()) \
        if (stores["local"] / "jobs" / job["job_id"]).exists() else True
    assert local.get(f"/v1/jobs/{job['job_id']}/result").status_code == 409


def test_delete_of_an_ended_job_is_idempotent_and_keeps_the_record_until_it_expires(api, local, stores, video):
    job = api.wait_job(local, api.submit(local, video, formats="json")["job_id"])
    url = f"/v1/jobs/{job['job_id']}"
    answers = [local.delete(url) for _ in range(3)]
    assert [a.status_code for a in answers] == [200] * 3
    assert [(a.json()["state"], a.json()["results"]) for a in answers] == [("succeeded", {})] * 3
    kept = local.get(url)
    assert kept.status_code == 200, kept.text
    assert (kept.json()["state"], kept.json()["expires_at"]) == ("succeeded", job["expires_at"])
    gone = local.get(f"{url}/result", params={"format": "json"})
    _assert_error(gone, 422, "invalid_option")
    assert "available: none" in gone.json()["error"]["message"]
    assert not (stores["local"] / "jobs" / job["job_id"]).exists()


@pytest.mark.slow
def test_ten_concurrent_deletes_of_a_running_job_agree_and_the_record_remains(api, local, tmp_path):
    long_video = synthetic.write_video(tmp_path / "long.mp4", synthetic.demo_scene(duration_s=40, size=SIZE, fps=15))
    job = api.submit(local, long_video)
    url = f"/v1/jobs/{job['job_id']}"
    api.wait_until(lambda: local.get(url).json()["progress"]["chunks_done"] >= 1, 60, what="the first chunk")
    start = threading.Barrier(10)

    def delete(_: int) -> httpx.Response:
        start.wait()  # all ten in flight together
        return local.delete(url)

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(delete, range(10)))
    assert [a.status_code for a in answers] == [200] * 10, [a.text for a in answers]
    outcomes = {(a.json()["state"], a.json()["error"]["code"], a.json()["progress"]["frames_done"]) for a in answers}
    assert len(outcomes) == 1 and next(iter(outcomes))[:2] == ("cancelled", "cancelled"), outcomes
    after = local.get(url)
    assert after.status_code == 200 and after.json()["state"] == "cancelled"
    assert after.json()["progress"]["frames_done"] == next(iter(outcomes))[2]
    assert after.json()["expires_at"] > time.time()


@pytest.mark.slow
def test_finished_jobs_expire_after_their_ttl(api, strict, stores, video):
    job = api.submit(strict, video)
    assert api.wait_job(strict, job["job_id"])["state"] == "succeeded"
    api.wait_until(lambda: strict.get(f"/v1/jobs/{job['job_id']}").status_code == 404, 15, 0.5, "expiry")
    assert not (stores["strict"] / "jobs" / job["job_id"]).exists()


def test_auth_required_when_tokens_are_configured(anonymous, video):
    assert anonymous.get("/healthz").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        response = anonymous.post("/v1/jobs", content=video.read_bytes(),
                                  headers={"Content-Type": "video/mp4", **headers})
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
        assert anonymous.get("/v1/jobs/0123abcd", headers=headers).status_code == 401


@pytest.mark.slow
def test_overload_answers_503_with_retry_after_and_accepted_jobs_finish(api, strict, video):
    accepted, refused = [], []
    for i in range(6):
        response = strict.post("/v1/jobs", params={"filename": f"load-{i}.mp4"}, content=video.read_bytes(),
                               headers={"Content-Type": "video/mp4"})
        (accepted if response.status_code == 202 else refused).append(response)
    assert refused, "no request was refused past a queue of one"
    for response in refused:
        assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
        assert response.json()["error"]["code"] == "overloaded"
    assert [api.wait_job(strict, r.json()["job_id"])["state"] for r in accepted] == ["succeeded"] * len(accepted)


@pytest.mark.slow
def test_the_service_lists_the_newest_jobs_first(api, local, video):
    # JobService, as the app runs it: the typed records behind the views.
    service = local.app.state.service
    ids = [api.submit(local, video, name=f"listed-{i}.mp4", formats="json")["job_id"] for i in range(2)]
    for job_id in ids:
        api.wait_job(local, job_id)
    newest = service.list(limit=2)
    assert [record.id for record in newest] == ids[::-1]
    assert [record.filename for record in newest] == ["listed-1.mp4", "listed-0.mp4"]
    assert newest[0].options.formats == ("json",) and newest[0].video.frame_count == 60


def test_readyz_reports_the_local_stages(local):
    body = local.get("/readyz").json()
    assert body["status"] == "ready" and body["deployments"]["Tracking"]["engine"]["name"] == "motion"
    assert body["deployments"]["Decode"] == {"ready": True}
    assert local.get("/healthz").json() == {"status": "ok"}


def test_openapi_documents_the_job_view(local):
    schema = local.get("/openapi.json").json()
    view = schema["components"]["schemas"]["JobView"]
    assert {"job_id", "state", "progress", "video", "options", "results", "urls"} <= set(view["properties"])
    assert schema["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"] == {"$ref": "#/components/schemas/JobView"}


# --- bad input --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_files(media, tmp_module) -> dict[str, Path]:
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
        # still images: refused (docs/api.md), not tracked as a video of one frame
        "jpeg": media.write_image(folder / "photo.jpg", "mjpeg"),
        "png": media.write_image(folder / "drawing.png", "png"),
    }


@pytest.mark.parametrize("case, status, code", [
    ("empty", 400, "empty_file"),
    ("text", 415, "not_a_media_file"),
    ("audio", 422, "no_video_stream"),
    ("truncated", 422, "corrupt_video"),
    ("ffv1", 415, "unsupported_codec"),
    ("jpeg", 415, "still_image"),
    ("png", 415, "still_image"),
    ("json_body", 415, "unsupported_media_type"),
    ("malformed_multipart", 400, "invalid_request"),
    ("path_instead_of_file", 400, "invalid_request"),
    ("url_as_body", 400, "invalid_request"),
    ("unknown_option", 422, "invalid_option"),
    ("bad_option_value", 422, "invalid_option"),
])
def test_bad_uploads_get_their_documented_error_and_leave_nothing(api, local, stores, bad_files, video, case,
                                                                   status, code):
    if case == "empty":
        response = _post(local, b"")
    elif case in ("text", "audio", "truncated", "ffv1", "jpeg", "png"):
        response = _post(local, bad_files[case].read_bytes())
    elif case == "json_body":
        response = _post(local, b'{"video": "people.mp4"}', "application/json")
    elif case == "malformed_multipart":
        response = _post(local, b"--xyz\r\nnot a header\r\n\r\nbody", "multipart/form-data; boundary=xyz")
    elif case == "path_instead_of_file":
        response = local.post("/v1/jobs", data={"file": "/etc/passwd"}, files={"other": ("x", b"1")})
    elif case == "url_as_body":
        response = _post(local, b"https://example.com/video.mp4", "application/octet-stream")
    elif case == "unknown_option":
        response = _post(local, video.read_bytes(), path="/srv/videos/a.mp4")
    else:
        response = _post(local, video.read_bytes(), fps="-3")
    _assert_error(response, status, code)
    assert api.spool_files(stores["local"]) == []


def test_limits_of_the_strict_app(api, strict, stores, bad_files):
    _assert_error(_post(strict, bad_files["wide"].read_bytes()), 422, "resolution_too_large")
    _assert_error(_post(strict, bad_files["long"].read_bytes()), 422, "duration_too_long")
    assert api.spool_files(stores["strict"]) == []


def test_damage_found_while_decoding_fails_the_job_with_its_position(api, local, bad_files):
    job = api.submit(local, bad_files["damaged"])  # the header and first frame are fine: accepted
    done = api.wait_job(local, job["job_id"])
    assert done["state"] == "failed" and done["error"]["code"] == "corrupt_video", done
    assert done["error"]["frame"] > 0 and done["error"]["time_s"] > 0
    _assert_error(local.get(f"/v1/jobs/{job['job_id']}/result"), 409, "job_not_finished")


def test_a_failed_job_answers_the_sync_request_with_its_status(local, bad_files):
    # The job's error, with the HTTP status of its type, and the job's id.
    response = local.post("/v1/track", content=bad_files["damaged"].read_bytes(), headers={"Content-Type": "video/mp4"})
    _assert_error(response, 422, "corrupt_video")
    assert response.json()["error"]["job_id"] and response.json()["error"]["chunk"] >= 0


def test_unknown_ids_routes_and_formats(api, local, video):
    _assert_error(local.get("/v1/jobs/0123456789abcdef"), 404, "job_not_found")
    traversal = local.get("/v1/jobs/..%2F..%2Fetc")
    assert traversal.status_code == 404 and traversal.json()["error"]["code"] in ("not_found", "job_not_found")
    _assert_error(local.delete("/v1/jobs/0123456789abcdef"), 404, "job_not_found")
    assert local.get("/v2/nothing").json()["error"]["code"] == "not_found"
    _assert_error(local.post("/v1/track", params={"format": "xml"}, content=video.read_bytes(),
                             headers={"Content-Type": "video/mp4"}), 422, "invalid_option")
    job = api.wait_job(local, api.submit(local, video, formats="json")["job_id"])
    _assert_error(local.get(f"/v1/jobs/{job['job_id']}/result", params={"format": "npz"}), 422, "invalid_option")
    deleted = local.delete(f"/v1/jobs/{job['job_id']}")
    assert deleted.status_code == 200 and deleted.json()["state"] == "succeeded" and deleted.json()["results"] == {}


def test_only_the_base_name_of_the_clients_file_name_is_kept(api, local, video):
    job = api.submit(local, video, name="../../etc/people.mp4")
    assert job["filename"] == "people.mp4"
    api.wait_job(local, job["job_id"])


@pytest.mark.slow
def test_the_library_imports_neither_ray_nor_its_adapters():
    # The API, the job service, the stages and the client are a library: Ray and deployments/
    # (its adapters) stay out of their imports, in a fresh interpreter.
    import subprocess
    import sys

    code = ("import sys, pose_pipeline.api.app, pose_pipeline.api.service, pose_pipeline.jobs.stages, "
            "pose_pipeline.client; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'deployments'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_an_idempotency_key_sent_again_gives_the_same_job(local, video):
    """A client that lost the answer to its POST (the dropped connection) sends it again with
    the same Idempotency-Key: the same job, not a second one; the key with another request is
    refused; an upload in parts, taken by its job, finds that job again too."""
    body, key = video.read_bytes(), "retry-after-a-dropped-connection"
    first = local.post("/v1/jobs", params={"fps": 5}, content=body,
                       headers={"Content-Type": "video/mp4", "Idempotency-Key": key})
    again = local.post("/v1/jobs", params={"fps": 5}, content=body,
                       headers={"Content-Type": "video/mp4", "Idempotency-Key": key})
    assert first.status_code == again.status_code == 202 and first.json()["job_id"] == again.json()["job_id"]
    other = local.post("/v1/jobs", params={"fps": 6}, content=body,
                       headers={"Content-Type": "video/mp4", "Idempotency-Key": key})
    _assert_error(other, 422, "idempotency_key_reused")
    assert other.json()["error"]["job_id"] == first.json()["job_id"]
    _assert_error(local.post("/v1/jobs", content=body, headers={"Content-Type": "video/mp4",
                                                                "Idempotency-Key": "k" * 256}), 400, "invalid_request")
    upload = local.post("/v1/uploads", params={"filename": "people.mp4", "size": len(body)}).json()
    assert local.put(f"/v1/uploads/{upload['id']}", params={"offset": 0}, content=body).status_code == 200
    parts_key = {"Idempotency-Key": "parts"}
    from_parts = local.post("/v1/jobs", params={"upload": upload["id"]}, headers=parts_key)
    assert from_parts.status_code == 202
    assert local.post("/v1/jobs", params={"upload": upload["id"]}, headers=parts_key).json()["job_id"] == \
        from_parts.json()["job_id"]


def test_the_same_idempotency_key_at_the_same_moment_makes_one_job(local, video):
    from concurrent.futures import ThreadPoolExecutor

    body = video.read_bytes()

    def send(_: int) -> httpx.Response:
        return local.post("/v1/jobs", params={"fps": 4}, content=body,
                          headers={"Content-Type": "video/mp4", "Idempotency-Key": "both-at-once"})

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(send, range(4)))
    assert {answer.status_code for answer in answers} == {202}
    assert len({answer.json()["job_id"] for answer in answers}) == 1


def test_an_idempotency_key_sent_again_gives_the_same_upload_in_parts(local, video):
    size = video.stat().st_size
    ask = {"filename": "people.mp4", "size": size}
    first = local.post("/v1/uploads", params=ask, headers={"Idempotency-Key": "upload-1"})
    again = local.post("/v1/uploads", params=ask, headers={"Idempotency-Key": "upload-1"})
    assert first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]
    other = local.post("/v1/uploads", params={**ask, "size": size - 1}, headers={"Idempotency-Key": "upload-1"})
    _assert_error(other, 422, "idempotency_key_reused")
    assert other.json()["error"]["upload_id"] == first.json()["id"]
    local.put(f"/v1/uploads/{first.json()['id']}", params={"offset": 0}, content=video.read_bytes())
    assert local.post("/v1/jobs", params={"upload": first.json()["id"]}).status_code == 202  # taken by its job
    fresh = local.post("/v1/uploads", params=ask, headers={"Idempotency-Key": "upload-1"})  # the key is free again
    assert fresh.status_code == 201 and fresh.json()["id"] != first.json()["id"]
