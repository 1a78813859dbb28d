"""Seeing a job's result through the HTTP API, in this process (the real app, job service and
local stages, through Starlette's ``TestClient``): the overlay MP4 (``formats=json,mp4``),
what the viewer page reads (frames by range, the timeline, the upload, media tokens), the job
list, and the refusal of a legacy codec with the command that fixes it. The page itself in a
browser: test_viewer_browser.py.

The engine is motion: the synthetic videos' figures are its ground truth, so the overlay's
boxes are where the figures walk. Apps of the module:
- ``local``: no auth;
- ``guarded``: a bearer token;
- ``listed``: a store of its own, for the job list;
- ``brief``: jobs expire 2 s after they end;
- ``legacy``: an operator who added msmpeg4 to ``limits.allowed_codecs``.
"""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from pose_pipeline.assets import synthetic
from pose_pipeline.client import Client
from pose_pipeline.config import Limits
from pose_pipeline.errors import UnsupportedCodec
from pose_pipeline.render.palette import track_color
from pose_pipeline.results.schema import TrackingResult
from pose_pipeline.video import ChunkDecoder, DecodeOptions, probe
from pose_pipeline.viewer.data import timeline_of

TOKEN = "viewer-api-token"
SIZE = (320, 180)
COMMON = {"decode": {"chunk_bytes": SIZE[0] * SIZE[1] * 3 * 12, "max_side": None}, "jobs": {"lease_s": 5}}
# The command the refusal must give, for a file named old-sample.avi (exactly: users paste it).
COMMAND = "ffmpeg -i old-sample.avi -c:v libx264 -pix_fmt yuv420p -crf 18 old-sample.mp4"


@pytest.fixture(scope="module")
def tmp_module(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("api-viewer")


def _app(local_api, tmp_module, name: str, **settings):
    return local_api({**COMMON, "store": {"root": str(tmp_module / name)}, **settings})


@pytest.fixture(scope="module")
def local(local_api, tmp_module):
    return _app(local_api, tmp_module, "local")


@pytest.fixture(scope="module")
def guarded(local_api, tmp_module):
    return local_api({**COMMON, "store": {"root": str(tmp_module / "guarded")}, "auth": {"tokens": [TOKEN]}},
                     headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture(scope="module")
def listed(local_api, tmp_module):
    return _app(local_api, tmp_module, "listed")


@pytest.fixture(scope="module")
def brief(local_api, tmp_module):
    return _app(local_api, tmp_module, "brief", jobs={"lease_s": 5, "ttl_s": 2})


@pytest.fixture(scope="module")
def legacy(local_api, tmp_module):
    return _app(local_api, tmp_module, "legacy",
                limits={"allowed_codecs": [*Limits().allowed_codecs, "msmpeg4", "msmpeg4v2"]})


@pytest.fixture(scope="module")
def video(tmp_module) -> Path:
    return synthetic.write_video(tmp_module / "people.mp4", synthetic.demo_scene(duration_s=4, size=SIZE, fps=15))


@pytest.fixture(scope="module")
def finished(api, local, video) -> dict:
    """A succeeded job of ``local`` with every format, and its served JSON result."""
    job = api.wait_job(local, api.submit(local, video, formats="json,npz,mp4")["job_id"])
    assert job["state"] == "succeeded", job
    job["result"] = local.get(f"/v1/jobs/{job['job_id']}/result").json()
    return job


@pytest.fixture(scope="module")
def old_avis(media, tmp_module) -> dict[str, Path]:
    """Old AVIs as OpenCV's classic sample video is made (MPEG-4 part 2, Microsoft's variants 2
    and 3; FFmpeg names the decoder of version 3 ``msmpeg4``)."""
    folder = tmp_module / "old"
    folder.mkdir()
    return {codec: media.write_video(folder / f"{codec}.avi", codec=codec, size=(176, 144), fps=25, frames=50)
            for codec in ("msmpeg4v2", "msmpeg4")}


def _assert_error(response: httpx.Response, status: int, code: str, **details) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert {k: error.get(k) for k in details} == details, error
    return error


def _plain_frames(video: Path) -> np.ndarray:
    with ChunkDecoder(video, probe(video), DecodeOptions(max_side=None)) as decoder:
        return np.concatenate([chunk.frames for chunk in decoder])


# --- the overlay MP4 ----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_overlay_mp4_has_the_results_frames_and_size_and_the_boxes_drawn(local, finished, video):
    job_id, result = finished["job_id"], TrackingResult.from_dict(finished["result"])
    assert set(finished["results"]) == {"json", "npz", "mp4"} and finished["results"]["mp4"]["bytes"] > 0
    response = local.get(f"/v1/jobs/{job_id}/result", params={"format": "mp4"})
    assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
    assert response.headers["content-disposition"] == f'attachment; filename="{job_id}.mp4"'
    assert len(response.content) == finished["results"]["mp4"]["bytes"]
    with av.open(io.BytesIO(response.content)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        decoded = [(f.to_ndarray(format="rgb24"), float(f.time)) for f in container.decode(video=0)]
    images = np.stack([image for image, _ in decoded])
    processing = finished["processing"]  # the processed size: here the source's (max_side null)
    assert images.shape == (len(result.frames), processing["frame_height"], processing["frame_width"], 3)
    assert (processing["frame_width"], processing["frame_height"]) == SIZE
    assert np.allclose([t for _, t in decoded], [f.time_s - result.frames[0].time_s for f in result.frames],
                       atol=1e-3)

    plain, checked = _plain_frames(video), 0
    for frame in result.frames[::7]:
        boxes = {p.track_id: p.bbox for p in frame.people}
        for person in frame.people:
            x1, y1, x2, y2 = (int(round(v)) for v in person.bbox)
            # only where no other box comes near the left edge and the strip left of it
            others = [b for k, b in boxes.items() if k != person.track_id]
            alone = all(b[2] < x1 - 14 or b[0] > x1 + 4 or b[3] < y1 or b[1] > y2 for b in others)
            if not person.detected or not alone or x1 < 14 or y2 - y1 < 12 or x2 > SIZE[0] or y2 > SIZE[1]:
                continue
            rows = slice(y1 + (y2 - y1) // 3, y1 + 2 * (y2 - y1) // 3)
            color = np.array(track_color(person.track_id), np.int16)
            drawn = np.abs(images[frame.index, rows, x1:x1 + 2].astype(np.int16) - color).max(axis=-1)
            before = np.abs(plain[frame.index, rows, x1:x1 + 2].astype(np.int16) - color).max(axis=-1)
            # the box's left edge, 2 px wide, pulled to the track's colour (4:2:0 halves the chroma
            # resolution: the line's colour blends with the figure's beside it; medians of 54 to 80
            # measured, the encode differing from run to run under load)
            assert (drawn < before - 20).mean() > 0.9 and np.median(drawn) < 100, (frame.index, person.track_id)
            far = np.abs(images[frame.index, rows, x1 - 12:x1 - 6].astype(int) -
                         plain[frame.index, rows, x1 - 12:x1 - 6]).mean()
            assert far < 6, (frame.index, far)  # beside the box: the picture, up to compression
            checked += 1
    assert checked >= 5, checked


@pytest.mark.slow
def test_the_mp4_needs_its_format_and_a_finished_job(api, local, video):
    job = api.submit(local, synthetic.write_video(video.with_name("long.mp4"),
                                                  synthetic.demo_scene(duration_s=12, size=SIZE, fps=15)),
                     formats="json,mp4")
    url = f"/v1/jobs/{job['job_id']}"
    _assert_error(local.get(f"{url}/result", params={"format": "mp4"}), 409, "job_not_finished")
    _assert_error(local.get(f"{url}/frames"), 409, "job_not_finished")
    _assert_error(local.get(f"{url}/tracks"), 409, "job_not_finished")
    assert local.get(f"{url}/video").status_code == 200  # the upload, while the job runs
    cancelled = local.delete(url).json()
    assert cancelled["state"] == "cancelled"
    error = _assert_error(local.get(f"{url}/frames"), 409, "job_not_finished", state="cancelled")
    assert error["job_error"]["code"] == "cancelled"
    _assert_error(local.get(f"{url}/video"), 409, "job_not_finished", state="cancelled")
    plain = api.wait_job(local, api.submit(local, video, formats="json")["job_id"])
    _assert_error(local.get(f"/v1/jobs/{plain['job_id']}/result", params={"format": "mp4"}), 422,
                  "invalid_option", option="format")


@pytest.mark.slow
def test_without_json_in_formats_the_viewer_still_reads_the_result(api, local, video):
    job = api.wait_job(local, api.submit(local, video, formats="npz,mp4")["job_id"])
    assert job["state"] == "succeeded" and set(job["results"]) == {"npz", "mp4"}
    _assert_error(local.get(f"/v1/jobs/{job['job_id']}/result", params={"format": "json"}), 422, "invalid_option")
    page = local.get(f"/v1/jobs/{job['job_id']}/frames", params={"count": 3}).json()
    assert page["total"] == 60 and [f["index"] for f in page["frames"]] == [0, 1, 2]


# --- what the viewer reads ------------------------------------------------------------------------


def test_frames_by_range_are_the_results_frames(local, finished):
    url, frames = f"/v1/jobs/{finished['job_id']}", finished["result"]["frames"]
    assert local.get(f"{url}/frames", params={"start": 10, "count": 5}).json() == {
        "start": 10, "count": 5, "total": 60, "frames": frames[10:15]}
    assert local.get(f"{url}/frames").json()["frames"] == frames  # 256 by default: all of them here
    assert local.get(f"{url}/frames", params={"start": 58, "count": 1000}).json()["frames"] == frames[58:]
    assert local.get(f"{url}/frames", params={"start": 60}).json() == {"start": 60, "count": 0, "total": 60,
                                                                       "frames": []}
    for params, option in (({"start": -1}, "start"), ({"start": "x"}, "start"), ({"count": 0}, "count"),
                           ({"count": "1.5"}, "count")):
        _assert_error(local.get(f"{url}/frames", params=params), 422, "invalid_option", option=option)


def test_the_timeline_is_the_results_tracks(local, finished, tmp_path):
    body = local.get(f"/v1/jobs/{finished['job_id']}/tracks").json()
    result_file = tmp_path / "result.json"
    result_file.write_bytes(local.get(f"/v1/jobs/{finished['job_id']}/result").content)
    assert body == timeline_of(result_file)  # what the aggregation stage wrote = the result read again
    assert (body["total_frames"], body["fps"]) == (60, 15.0) and len(body["tracks"]) >= 2
    summaries = {t["track_id"]: t for t in finished["result"]["tracks"]}
    for track in body["tracks"]:
        assert {k: track[k] for k in summaries[track["track_id"]]} == summaries[track["track_id"]]
        seen = [f["index"] for f in finished["result"]["frames"]
                if any(p["track_id"] == track["track_id"] for p in f["people"])]
        assert [k for a, b in track["segments"] for k in range(a, b + 1)] == seen


def test_the_upload_stays_with_the_job_and_goes_with_delete(local, finished, video, tmp_module):
    url = f"/v1/jobs/{finished['job_id']}"
    folder = tmp_module / "local" / "jobs" / finished["job_id"]
    assert (folder / "upload").read_bytes() == video.read_bytes()
    whole = local.get(f"{url}/video")
    assert whole.status_code == 200 and whole.content == video.read_bytes()
    assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-disposition"].startswith("inline")
    part = local.get(f"{url}/video", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == video.read_bytes()[100:200]
    assert local.get(f"{url}/viewer").status_code == 200
    local.delete(url)
    assert not folder.exists()  # nothing left behind
    _assert_error(local.get(f"{url}/video"), 404, "job_not_found")
    _assert_error(local.get(f"{url}/frames"), 404, "job_not_found")
    _assert_error(local.get(f"{url}/tracks"), 404, "job_not_found")


@pytest.mark.slow
def test_the_upload_goes_when_the_job_expires(api, brief, tmp_module, video):
    job = api.wait_job(brief, api.submit(brief, video, formats="json")["job_id"])
    folder = tmp_module / "brief" / "jobs" / job["job_id"]
    assert (folder / "upload").exists() and brief.get(f"/v1/jobs/{job['job_id']}/video").status_code == 200
    api.wait_until(lambda: brief.get(f"/v1/jobs/{job['job_id']}").status_code == 404, 15, 0.5, "expiry")
    assert not folder.exists()
    _assert_error(brief.get(f"/v1/jobs/{job['job_id']}/video"), 404, "job_not_found")


def test_a_failed_job_keeps_no_video(api, local, media, tmp_path):
    damaged = media.corrupt_middle(media.write_video(tmp_path / "damaged.mp4", size=(160, 120), frames=90, gop=10,
                                                     container_options={"movflags": "faststart"}),
                                   length=4096, at=0.6)
    job = api.wait_job(local, api.submit(local, damaged)["job_id"])
    assert job["state"] == "failed"
    error = _assert_error(local.get(f"/v1/jobs/{job['job_id']}/frames"), 409, "job_not_finished", state="failed")
    assert error["job_error"]["code"] == "corrupt_video"
    _assert_error(local.get(f"/v1/jobs/{job['job_id']}/video"), 409, "job_not_finished", state="failed")


def test_the_viewer_page_and_its_files(local, finished):
    job_url = finished["urls"]["self"]
    assert finished["urls"]["viewer"] == f"{job_url}/viewer"
    assert {k: finished["urls"][k] for k in ("frames", "tracks", "video", "media_token")} == {
        "frames": f"{job_url}/frames", "tracks": f"{job_url}/tracks", "video": f"{job_url}/video",
        "media_token": f"{job_url}/media-token"}
    page = local.get(finished["urls"]["viewer"])
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert 'src="../../viewer/viewer.js"' in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "https:" not in policy
    for name, media_type in (("viewer.js", "text/javascript"), ("frames.js", "text/javascript"),
                             ("viewer.css", "text/css")):
        asset = local.get(f"/v1/viewer/{name}")  # module scripts need a JavaScript type
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(media_type), name
    _assert_error(local.get("/v1/viewer/secret.py"), 404, "not_found")
    for path in ("viewer", "frames", "tracks", "video"):
        _assert_error(local.get(f"/v1/jobs/{'e' * 32}/{path}"), 404, "job_not_found")
    _assert_error(local.post(f"/v1/jobs/{'e' * 32}/media-token"), 404, "job_not_found")


@pytest.mark.slow
def test_with_auth_the_data_refuse_without_the_token_and_the_page_does_not(api, guarded, video):
    job = api.wait_job(guarded, api.submit(guarded, video, formats="json,mp4")["job_id"], timeout_s=60)
    url = f"/v1/jobs/{job['job_id']}"
    with httpx.Client(transport=guarded._transport, base_url=str(guarded.base_url)) as anonymous:
        for response in (anonymous.get(f"{url}/frames"), anonymous.get(f"{url}/tracks"),
                         anonymous.get(f"{url}/video"), anonymous.get(f"{url}/result", params={"format": "mp4"}),
                         anonymous.post(f"{url}/media-token"), anonymous.get("/v1/jobs"),
                         anonymous.get(f"{url}/video", headers={"Authorization": "Bearer wrong"}),
                         anonymous.get(f"/v1/jobs/{'e' * 32}/frames")):  # 401 before 404: ids are not probed
            _assert_error(response, 401, "unauthorized")
        assert anonymous.get(f"{url}/viewer").status_code == 200  # a browser opens it without a header
        assert anonymous.get("/v1/viewer/api.js").status_code == 200
        token = guarded.post(f"{url}/media-token").json()
        assert token["expires_at"] <= min(time.time() + 3600 + 1, job["expires_at"])
        video_bytes = anonymous.get(f"{url}/video", params={"media_token": token["token"]})
        assert video_bytes.status_code == 200 and video_bytes.content == video.read_bytes()
        other = guarded.app.state.service.viewer.tokens.issue("f" * 32).token
        for bad in (other, "", "123.abc", token["token"] + "x", "²³.x", "9999999999.é"):  # the last two: once a 500
            _assert_error(anonymous.get(f"{url}/video", params={"media_token": bad}), 401, "unauthorized")
        expired = guarded.app.state.service.viewer.tokens.issue(job["job_id"], not_after=time.time() - 5).token
        _assert_error(anonymous.get(f"{url}/video", params={"media_token": expired}), 401, "unauthorized")
    assert guarded.get(f"{url}/video").content == video.read_bytes()  # the bearer header does too


# --- the job list -------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_job_list_is_newest_first_paginated_and_filtered(api, listed, media, video, tmp_path):
    small = synthetic.write_video(tmp_path / "small.mp4", synthetic.demo_scene(duration_s=1, size=(160, 90), fps=10))
    damaged = media.corrupt_middle(media.write_video(tmp_path / "damaged.mp4", size=(160, 120), frames=90, gop=10,
                                                     container_options={"movflags": "faststart"}),
                                   length=4096, at=0.6)
    ids = []
    for i, path in enumerate((small, small, damaged, small)):
        ids.append(api.submit(listed, path, name=f"listed-{i}.mp4", formats="json")["job_id"])
        api.wait_job(listed, ids[-1])
    newest_first = ids[::-1]

    everything = listed.get("/v1/jobs").json()
    assert [j["job_id"] for j in everything["jobs"]] == newest_first and everything["next_cursor"] is None
    for item in everything["jobs"]:  # the same fields as a single job
        single = listed.get(f"/v1/jobs/{item['job_id']}").json()
        assert item == single | {"timings": item["timings"]}

    seen, cursor, pages = [], None, 0
    while True:
        page = listed.get("/v1/jobs", params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seen += [j["job_id"] for j in page["jobs"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        if pages == 1:  # a job created meanwhile is not in the later pages, and nothing repeats
            newer = api.submit(listed, small, name="newer.mp4", formats="json")["job_id"]
    assert seen == newest_first and pages == 2
    api.wait_job(listed, newer)

    assert [j["job_id"] for j in listed.get("/v1/jobs", params={"state": "failed"}).json()["jobs"]] == [ids[2]]
    assert [j["job_id"] for j in listed.get("/v1/jobs", params={"state": "succeeded", "limit": 2}).json()["jobs"]] \
        == [newer, ids[3]]
    both = listed.get("/v1/jobs", params={"state": "failed,succeeded"}).json()["jobs"]
    assert [j["job_id"] for j in both] == [newer, *newest_first]
    assert listed.get("/v1/jobs", params={"state": "queued"}).json() == {"jobs": [], "next_cursor": None}

    forged = base64.urlsafe_b64encode(b'[1.0, "../etc"]').decode()
    for params, option in (({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"limit": "ten"}, "limit"),
                           ({"cursor": "not-a-cursor"}, "cursor"), ({"cursor": forged}, "cursor"),
                           ({"cursor": base64.urlsafe_b64encode(b'{"a": 1}').decode()}, "cursor"),
                           ({"state": "done"}, "state"), ({"state": "succeeded,bogus"}, "state")):
        _assert_error(listed.get("/v1/jobs", params=params), 422, "invalid_option", option=option)

    with Client(http=listed) as client:  # the client reads the same pages
        first = client.jobs(limit=2, state=["succeeded", "failed"])
        assert [j.job_id for j in first.jobs] == [newer, ids[3]] and first.next_cursor
        assert [j.job_id for j in client.iter_jobs(page_size=2)] == [newer, *newest_first]
        assert [j.job_id for j in client.iter_jobs(state="failed")] == [ids[2]]


def test_openapi_documents_the_new_endpoints(local):
    schema = local.get("/openapi.json").json()
    for path, method in (("/v1/jobs", "get"), ("/v1/jobs/{job_id}/viewer", "get"), ("/v1/jobs/{job_id}/frames", "get"),
                         ("/v1/jobs/{job_id}/tracks", "get"), ("/v1/jobs/{job_id}/media-token", "post"),
                         ("/v1/jobs/{job_id}/video", "get")):
        assert method in schema["paths"][path], path
    models = schema["components"]["schemas"]
    assert {"JobList", "FramesPage", "Timeline", "MediaTokenView", "ProcessingView"} <= set(models)
    assert {"viewer", "frames", "tracks", "video", "media_token"} <= set(models["JobUrls"]["properties"])


# --- a legacy codec ------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["msmpeg4v2", "msmpeg4"])
def test_an_old_avi_is_refused_with_the_command_that_re_encodes_it(api, local, old_avis, tmp_module, tmp_path,
                                                                   codec):
    data = old_avis[codec].read_bytes()
    raw = local.post("/v1/jobs", params={"filename": "old-sample.avi"}, content=data,
                     headers={"Content-Type": "video/x-msvideo"})
    error = _assert_error(raw, 415, "unsupported_codec", codec=codec, command=COMMAND)
    assert error["message"].endswith(f"re-encode the video to H.264 with: {COMMAND}")
    multipart = local.post("/v1/jobs", files={"file": ("old-sample.avi", data, "video/x-msvideo")})
    _assert_error(multipart, 415, "unsupported_codec", command=COMMAND)
    named = tmp_path / "old-sample.avi"
    named.write_bytes(data)
    with Client(http=local) as client:  # in parts: the upload's own name
        upload = client.upload_parts(named, part_bytes=4096)
    _assert_error(local.post("/v1/jobs", params={"upload": upload.id}), 415, "unsupported_codec", command=COMMAND)
    assert api.spool_files(tmp_module / "local") == api.part_files(tmp_module / "local") == []


def test_the_command_is_quoted_and_never_overwrites_its_input(old_avis):
    with pytest.raises(UnsupportedCodec) as caught:
        probe(old_avis["msmpeg4"], Limits())  # offline (pose-pipeline track/probe): the file's own name
    assert caught.value.command == "ffmpeg -i msmpeg4.avi -c:v libx264 -pix_fmt yuv420p -crf 18 msmpeg4.mp4"
    from pose_pipeline.video import reencode_command

    assert reencode_command("my clip (1).avi") == \
        "ffmpeg -i 'my clip (1).avi' -c:v libx264 -pix_fmt yuv420p -crf 18 'my clip (1).mp4'"
    assert reencode_command("old.mp4").endswith(" old.h264.mp4")  # an MPEG-4 part 2 .mp4: not onto itself


def test_re_encoded_as_the_command_says_the_video_is_accepted(api, local, old_avis, tmp_path):
    """What the command does (libx264, yuv420p, CRF 18), done with PyAV (no ffmpeg binary
    needed): the result is accepted and tracked."""
    out = tmp_path / "old-sample.mp4"
    with av.open(str(old_avis["msmpeg4v2"])) as source, av.open(str(out), "w") as target:
        stream = target.add_stream("libx264", rate=25, options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = 176, 144, "yuv420p"
        for frame in source.decode(video=0):
            target.mux(stream.encode(frame.reformat(format="yuv420p")))
        target.mux(stream.encode())
    done = api.wait_job(local, api.submit(local, out)["job_id"])
    assert done["state"] == "succeeded" and done["video"]["codec"] == "h264" and done["progress"]["frames_done"] == 50


@pytest.mark.slow
def test_an_operator_may_allow_legacy_codecs(api, legacy, old_avis, media):
    """Not the default (docs/configuration.md says why), but FFmpeg decodes them exactly: every
    frame, in order, at its time."""
    for codec, path in old_avis.items():
        done = api.wait_job(legacy, api.submit(legacy, path, name="old-sample.avi", formats="json")["job_id"])
        assert (done["state"], done["video"]["codec"], done["video"]["container"]) == ("succeeded", codec, "avi")
        frames = legacy.get(f"/v1/jobs/{done['job_id']}/result").json()["frames"]
        assert [f["source_index"] for f in frames] == list(range(50))
        assert np.allclose([f["time"] for f in frames], np.arange(50) / 25)
    with ChunkDecoder(old_avis["msmpeg4"], probe(old_avis["msmpeg4"]), DecodeOptions()) as decoder:
        assert [media.read_index(image) for chunk in decoder for image in chunk.frames] == list(range(50))
