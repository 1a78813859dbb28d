"""The ``pose-pipeline`` command run as a user runs it (``python -m pose_pipeline.cli`` in a
subprocess), and the configuration it reads: ``Settings.load`` and ``JobOptions.parse``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from pose_pipeline.config import Settings
from pose_pipeline.errors import InvalidOption
from pose_pipeline.pipeline import JobOptions
from pose_pipeline.results.writers import read_result
from pose_pipeline.video import ChunkDecoder, DecodeOptions, probe

WIDTH, HEIGHT, SECONDS, FPS = 240, 136, 2, 30


def cli(*args: str | Path, env: dict[str, str] | None = None, code: int = 0) -> subprocess.CompletedProcess:
    """Run the command; assert its exit status. Settings come only from ``env``; the engine is
    motion, whose ground truth the synthetic videos are, unless ``env`` says otherwise."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("POSE_PIPELINE_")}
    done = subprocess.run([sys.executable, "-m", "pose_pipeline.cli", *map(str, args)], capture_output=True,
                          text=True, env={**clean, "POSE_PIPELINE_ENGINE__NAME": "motion", **(env or {})}, timeout=120)
    assert done.returncode == code, done.stderr
    return done


@pytest.fixture(scope="module")
def video(demo, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "demo.mp4"
    done = cli("demo-video", path, "--seconds", SECONDS, "--size", f"{WIDTH}x{HEIGHT}", "--fps", FPS)
    assert path.stat().st_size > 0 and "demo.mp4" in done.stderr
    return path


@pytest.mark.slow
def test_probe_prints_the_video_as_json(video):
    info = json.loads(cli("probe", video).stdout)
    assert (info["container"], info["codec"]) == ("mp4", "h264")
    assert (info["width"], info["height"], info["rotation"]) == (WIDTH, HEIGHT, 0)
    assert (info["fps"], info["frame_count"], info["duration_s"]) == (FPS, SECONDS * FPS, SECONDS)


@pytest.mark.slow
def test_track_to_json(demo, video, tmp_path):
    out = tmp_path / "results" / "walk.json"
    done = cli("track", video, "-o", out, env={"POSE_PIPELINE_DECODE__MAX_SIDE": "200"})
    result = read_result(out)
    assert result.header.schema_version == "1" and result.header.engine.name == "motion"
    assert len(result.frames) == SECONDS * FPS and result.tracks
    assert f"{len(result.tracks)} tracks" in done.stderr
    processing = result.header.processing
    assert (processing.max_side, processing.frame_width) == (200, 200)  # from the environment
    assert demo.load_json(out)["tracks"] == [t.to_dict() for t in result.tracks]
    assert [p.name for p in out.parent.iterdir()] == ["walk.json"]


@pytest.mark.slow
def test_track_refuses_an_output_whose_suffix_names_no_result_format(video, tmp_path):
    """``-o out.mp4`` once wrote an NPZ under that name: now nothing is run or written, and the
    message says what to use instead."""
    done = cli("track", video, "-o", tmp_path / "out.mp4", code=2)
    assert "cannot tell the result's format from out.mp4" in done.stderr and "--overlay out.mp4" in done.stderr
    done = cli("track", video, "-o", tmp_path / "out.txt", code=2)
    assert "use .json, .npz, .bvh or .zip, or --format" in done.stderr
    assert not any(tmp_path.iterdir())
    done = cli("track", video, "-o", tmp_path / "out.txt", "--format", "json")  # said outright: written
    written = Path(done.stderr.strip().splitlines()[-1].split(": ")[0])
    assert json.loads(written.read_text())["schema_version"] == "1"


def test_track_to_npz_with_options(video, tmp_path):
    out = tmp_path / "walk.npz"
    cli("track", video, "-o", out, "--fps", "10", "--max-side", "160")
    result = read_result(out)
    processing = result.header.processing
    assert (processing.fps, processing.max_side) == (10, 160)
    assert (processing.frame_width, processing.frame_height) == (160, 91)
    assert len(result.frames) == SECONDS * 10 and result.tracks
    assert result.header.video.width == WIDTH  # boxes stay in source pixels
    assert max(float(p.bbox[2]) for f in result.frames for p in f.people) > 160


BAD_INPUTS = {  # id: (command, file content or None for no file, extra arguments, error code)
    "text-track": ("track", b"just some text\n", [], "not_a_media_file"),
    "empty-probe": ("probe", b"", [], "empty_file"),
    "missing-track": ("track", None, [], "not_found"),
    "missing-probe": ("probe", None, [], "not_found"),
    "bad-option": ("track", "video", ["--fps", "-3"], "invalid_option"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
@pytest.mark.slow
def test_bad_input_gives_one_error_line_and_status_2(video, tmp_path, case):
    command, content, extra, code = BAD_INPUTS[case]
    path = video if content == "video" else tmp_path / "clip.mp4"
    if isinstance(content, bytes):
        path.write_bytes(content)
    out = tmp_path / "out.json"
    done = cli(command, path, *(["-o", out] if command == "track" else []), *extra, code=2)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {code}: "), done.stderr
    assert not out.exists() and done.stdout == ""


# --- configuration -----------------------------------------------------------------------------


def test_settings_precedence_defaults_yaml_environment(tmp_path):
    config = tmp_path / "settings.yaml"
    config.write_text("decode:\n  max_side: 720\n  fps: 12.5\njobs:\n  max_running: 2\n")
    env = {"POSE_PIPELINE_DECODE__MAX_SIDE": "480", "POSE_PIPELINE_LIMITS__ALLOWED_CODECS": "[h264, vp9]",
           "POSE_PIPELINE_UNRELATED": "ignored"}
    settings = Settings.load(config, env=env)
    assert settings.decode.max_side == 480  # environment over YAML
    assert settings.decode.fps == 12.5 and settings.jobs.max_running == 2  # YAML over defaults
    assert settings.limits.allowed_codecs == ("h264", "vp9")  # values are YAML scalars
    assert settings.jobs.max_queued == Settings().jobs.max_queued  # untouched: the default
    assert Settings.load(env={"POSE_PIPELINE_CONFIG": str(config)}).decode.max_side == 720
    assert Settings.load(env={}) == Settings()


def test_environment_values_of_text_fields_are_taken_as_they_are():
    """Not read as YAML: a ``#`` would cut a password there, and ``on`` become ``true``."""
    dsn = "postgresql://user:pa #ss@db/pose"
    settings = Settings.load(env={"POSE_PIPELINE_STORE__DATABASE": dsn, "POSE_PIPELINE_ENGINE__NAME": "on",
                                  "POSE_PIPELINE_DECODE__MAX_SIDE": "null"})  # not text: YAML's null
    assert (settings.store.database, settings.engine.name, settings.decode.max_side) == (dsn, "on", None)


@pytest.mark.parametrize("yaml_text, env", [
    ("decode:\n  max_sid: 720\n", {}),
    ("colour: blue\n", {}),
    ("", {"POSE_PIPELINE_JOBS__MAX_RUNING": "3"}),
    ("", {"POSE_PIPELINE_NOSECTION__FIELD": "3"}),
    ("jobs:\n  max_running: many\n", {}),
], ids=["unknown-field", "unknown-section", "unknown-env-field", "unknown-env-section", "bad-value"])
def test_settings_reject_unknown_keys_and_bad_values(tmp_path, yaml_text, env):
    config = tmp_path / "settings.yaml"
    config.write_text(yaml_text)
    with pytest.raises(InvalidOption, match="invalid configuration"):
        Settings.load(config, env=env)


def test_job_options_parse():
    options = JobOptions.parse({"fps": "10", "max_side": 320, "formats": "npz, json"})
    assert (options.fps, options.max_side, options.formats) == (10.0, 320, ("npz", "json"))
    assert JobOptions.parse({}) == JobOptions()


@pytest.mark.parametrize("values, fields", [
    ({"colour": "blue"}, ["colour"]),
    ({"fps": 0}, ["fps"]),
    ({"fps": "fast", "max_side": 8}, ["fps", "max_side"]),
    ({"formats": "json,xml"}, ["formats"]),
    ({"start_s": -1, "end_s": 0}, ["end_s", "start_s"]),
])
def test_job_options_reject_bad_values_naming_the_fields(values, fields):
    with pytest.raises(InvalidOption) as info:
        JobOptions.parse(values)
    assert info.value.details["fields"] == fields
    assert all(name in info.value.message for name in fields)


# --- seeing the result -------------------------------------------------------------------------


@pytest.mark.slow
def test_track_with_overlay_writes_the_video_with_the_result_drawn(video, tmp_path):
    out, overlay = tmp_path / "walk.json", tmp_path / "videos" / "walk.mp4"
    done = cli("track", video, "-o", out, "--overlay", overlay, "--max-side", "160")
    result = read_result(out)
    assert f"{overlay}: written" in done.stderr
    with av.open(str(overlay)) as container:
        images = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    # every result frame, at the processed size (160x91, padded to even for 4:2:0: 160x92)
    assert len(images) == len(result.frames) == SECONDS * FPS
    assert {image.shape for image in images} == {(92, 160, 3)}
    with ChunkDecoder(video, probe(video), DecodeOptions(max_side=160)) as decoder:  # what the engine saw
        plain = [image for chunk in decoder for image in chunk.frames]
    drawn = [k for k, f in enumerate(result.frames) if f.people]
    changed = [np.abs(images[k][:91].astype(int) - plain[k]).max() > 100 for k in drawn]
    assert drawn and all(changed)  # boxes on every frame with people


@pytest.mark.slow
def test_submit_prints_the_viewer_and_jobs_lists_the_jobs(video, tmp_path):
    """Against the library's app over real HTTP in this process (no Ray): ``submit --wait
    --overlay`` downloads the overlay video and prints the job's viewer URL; ``jobs`` lists
    the jobs newest first, a page at a time."""
    from pose_pipeline.api.app import create_app
    from pose_pipeline.api.service import JobService
    from pose_pipeline.jobs.stages import LocalStages

    from support.http_server import serve_app

    settings = Settings.from_dict({"engine": {"name": "motion"}, "store": {"root": str(tmp_path / "store")}})
    service = JobService(settings, LocalStages.from_settings(settings), owner="cli-test")
    with serve_app(create_app(service)) as url:
        out, overlay = tmp_path / "out.json", tmp_path / "out.mp4"
        done = cli("submit", video, "--url", url, "--wait", "-o", out, "--overlay", overlay)
        (viewer,) = [line.removeprefix("viewer: ") for line in done.stderr.splitlines() if line.startswith("viewer: ")]
        job_id = viewer.removeprefix(f"{url}/v1/jobs/").removesuffix("/viewer")
        assert httpx.get(viewer).status_code == 200 and len(job_id) == 32
        with av.open(str(overlay)) as container:
            assert sum(1 for _ in container.decode(video=0)) == len(read_result(out).frames) == SECONDS * FPS
        second = cli("submit", video, "--url", url).stdout.strip()  # no --wait: its id on stdout
        first_page = cli("jobs", "--url", url, "--limit", "1")
        rows = first_page.stdout.splitlines()
        assert rows[0].split()[:3] == ["JOB", "STATE", "STAGE"] and rows[1].split()[0] == second
        (cursor,) = [line.split("--cursor ")[1] for line in first_page.stderr.splitlines() if "--cursor" in line]
        rest = cli("jobs", "--url", url, "--cursor", cursor, "--json")
        assert [json.loads(line)["job_id"] for line in rest.stdout.splitlines()] == [job_id]
        assert "more:" not in rest.stderr
        bad = cli("jobs", "--url", url, "--state", "finished", code=2)
        assert bad.stderr.startswith("error: invalid_option: state must be one of")
        assert cli("submit", video, "--url", url, "--overlay", overlay, code=2).stderr.startswith(
            "error: invalid_option: --overlay needs --wait")
        npz = tmp_path / "out.npz"  # the suffix chooses the format the job writes and the client fetches
        cli("submit", video, "--url", url, "--wait", "-o", npz)
        tracks = [[(p.track_id, p.bbox.round(2).tolist()) for p in f.people] for f in read_result(npz).frames]
        assert tracks == [[(p.track_id, p.bbox.round(2).tolist()) for p in f.people] for f in read_result(out).frames]


def test_the_client_sends_a_whole_upload_s_length_so_the_server_refuses_it_unread(video, tmp_path):
    from pose_pipeline.api.app import create_app
    from pose_pipeline.api.service import JobService
    from pose_pipeline.client import Client
    from pose_pipeline.errors import FileTooLarge
    from pose_pipeline.jobs.stages import LocalStages

    from support.http_server import serve_app

    limit = video.stat().st_size // 2
    settings = Settings.from_dict({"engine": {"name": "motion"}, "store": {"root": str(tmp_path / "store")},
                                   "limits": {"max_body_bytes": limit}})
    service = JobService(settings, LocalStages.from_settings(settings), owner="cli-test")
    sent: list[httpx.Request] = []
    with serve_app(create_app(service)) as url, \
            httpx.Client(base_url=url, event_hooks={"request": [sent.append]}) as http:
        with pytest.raises(FileTooLarge, match="at most"):
            Client(http=http).submit(video, part_bytes=10 * video.stat().st_size)
    assert sent[-1].headers["content-length"] == str(video.stat().st_size)
    assert not list((tmp_path / "store" / "spool").iterdir())  # nothing received, nothing left


def test_models_check_of_the_configured_phalp_engine_reads_the_global_config(tmp_path):
    """``pose-pipeline --config X models check``: the configured engine's files (phalp's
    weights here), where the configuration puts them."""
    config = tmp_path / "settings.yaml"
    config.write_text(f"engine:\n  name: phalp\n  options:\n    weights_dir: {tmp_path / 'weights'}\n")
    done = cli("--config", config, "models", "check", env={"POSE_PIPELINE_ENGINE__NAME": "phalp"},
               code=1)  # nothing there: every file missing
    assert str(tmp_path / "weights" / "phalp") in done.stdout


def test_remote_commands_say_when_the_service_cannot_be_reached():
    done = cli("jobs", "--url", "http://127.0.0.1:9", code=1)
    assert done.stderr.startswith("error: cannot reach the service at http://127.0.0.1:9")
    assert "Traceback" not in done.stderr


def test_progress_draws_on_a_terminal_only_and_says_where_it_ended_elsewhere(tmp_path):
    import io
    import os
    import pty

    from pose_pipeline.cli.progress import ProgressBar

    log = io.StringIO()  # a CI log: no redraws, one line at the end
    bar = ProgressBar("clip.mp4", stream=log, min_interval_s=0.0)
    for done in range(0, 101, 10):
        bar(done, 100, "tracking")
    bar.close()
    assert log.getvalue() == "clip.mp4: 100/100 frames (100%) tracking\n"
    controller, terminal = pty.openpty()  # a real terminal: the bar redraws in place
    with os.fdopen(terminal, "w") as stream:
        bar = ProgressBar("clip.mp4", stream=stream, min_interval_s=0.0)
        bar(50, 100, "tracking")
        bar.close()
    drawn = os.read(controller, 4096).decode()
    os.close(controller)
    assert drawn.startswith("\rclip.mp4 [###############") and "50%" in drawn and drawn.endswith("\r\n")


def test_version_and_a_result_suffix_the_service_cannot_write(video):
    from pose_pipeline import __version__

    assert cli("--version").stdout.strip() == f"pose-pipeline {__version__}"
    done = cli("submit", video, "--url", "http://127.0.0.1:9", "--wait", "-o", "result.txt", code=2)
    assert done.stderr.startswith("error: invalid_option: cannot tell the format of result.txt")


@pytest.mark.slow
def test_event_streams_end_before_a_proxy_cuts_them_and_the_client_resumes_them(tmp_path):
    """Real HTTP: with ``jobs.events_stream_s`` short the server ends the stream many times
    while the job runs; ``Client.wait`` resumes each from its last event and returns the
    job's end; a resumed stream gives only what changed since (``Last-Event-ID``)."""
    from pose_pipeline.api.app import create_app
    from pose_pipeline.api.service import JobService
    from pose_pipeline.client import Client
    from pose_pipeline.jobs.stages import LocalStages

    from support.http_server import serve_app

    video, seconds = tmp_path / "long.mp4", 12  # a job of a few seconds: streams of 0.2 s end during it
    cli("demo-video", video, "--seconds", seconds, "--size", f"{WIDTH}x{HEIGHT}", "--fps", FPS)
    settings = Settings.from_dict({"engine": {"name": "motion"}, "store": {"root": str(tmp_path / "store")},
                                   "jobs": {"events_stream_s": 0.2}, "decode": {"chunk_bytes": WIDTH * HEIGHT * 3 * 4}})
    service = JobService(settings, LocalStages.from_settings(settings), owner="events-test")
    streams: list[httpx.Request] = []
    hooks = {"request": [lambda request: streams.append(request) if request.url.path.endswith("/events") else None]}
    seen: list[int] = []
    with serve_app(create_app(service)) as url, httpx.Client(base_url=url, event_hooks=hooks) as http:
        client = Client(http=http)
        job = client.submit(video)
        done = client.wait(job.job_id, progress=lambda status: seen.append(status.progress.frames_done))
        assert done.state.value == "succeeded" and seen[-1] == seconds * FPS and seen == sorted(seen)
        assert len(streams) >= 2 and any("last-event-id" in request.headers for request in streams[1:])
        with http.stream("GET", f"/v1/jobs/{job.job_id}/events") as response:  # a new follower: the end
            lines = [line for line in response.iter_lines() if line]
        assert lines[0] == "retry: 1000" and lines[1].startswith("id: ") and lines[2] == "event: status"
        last_id = lines[1].removeprefix("id: ")
        with http.stream("GET", f"/v1/jobs/{job.job_id}/events", headers={"Last-Event-ID": last_id}) as response:
            assert [line for line in response.iter_lines() if line] == ["retry: 1000"]  # nothing since
