"""What the viewer's endpoints send (frames by range, the track timeline), the media tokens
of its <video> element, and its files: on the real job of tests/real_jobs.py."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from real_jobs import bikes_window

from pose_pipeline import viewer
from pose_pipeline.api.media_tokens import MediaTokens
from pose_pipeline.results.schema import Frame, summarize_tracks
from pose_pipeline.results.writers import JsonWriter
from pose_pipeline.viewer.data import MAX_PAGE_FRAMES, FrameIndex, TimelineTally, timeline_of


@pytest.fixture(scope="module")
def job():
    return bikes_window()


def write_json(path: Path, header, frames) -> Path:
    with open(path, "w") as fp:
        writer = JsonWriter(fp)
        writer.begin(header)
        for frame in frames:
            writer.frame(frame)
        writer.end(summarize_tracks(frames))
    return path


# --- frames by range ----------------------------------------------------------------------------


def test_frame_pages_are_the_result_files_frames(job):
    index = FrameIndex.build(job.result_path)
    document = json.loads(job.result_path.read_text())
    assert index.total == len(document["frames"]) == 65
    assert index.page(0, 256) == {"start": 0, "count": 65, "total": 65, "frames": document["frames"]}
    assert index.page(60, 10)["frames"] == document["frames"][60:] and index.page(60, 10)["count"] == 5
    assert index.page(65, 1)["count"] == 0 and index.page(7, 1)["frames"] == [document["frames"][7]]
    for start, count in ((-1, 5), (0, 0)):
        with pytest.raises(ValueError):
            index.page(start, count)


def test_a_long_result_is_paged_at_most_max_page_frames_at_a_time(job, tmp_path):
    frames = [Frame(k, k, k / 25, job.result.frames[k % 65].people) for k in range(1500)]
    index = FrameIndex.build(write_json(tmp_path / "long.json", job.result.header, frames))
    page = index.page(400, 5000)
    assert (page["count"], page["total"]) == (MAX_PAGE_FRAMES, 1500)
    assert [f["index"] for f in page["frames"]] == list(range(400, 1400))
    assert index.page(1499, 10)["frames"][0] == frames[1499].to_dict()


def test_a_file_in_another_layout_or_changed_is_refused(job, tmp_path):
    indented = tmp_path / "indented.json"
    indented.write_text(json.dumps(json.loads(job.result_path.read_text()), indent=2))
    with pytest.raises(ValueError, match="one frame per line"):
        FrameIndex.build(indented)
    empty = FrameIndex.build(write_json(tmp_path / "empty.json", job.result.header, []))
    assert empty.total == 0 and empty.page(0, 10)["frames"] == []
    copy = write_json(tmp_path / "copy.json", job.result.header, job.result.frames)
    index = FrameIndex.build(copy)
    write_json(copy, job.result.header, job.result.frames[1:])  # rewritten after the index was built
    with pytest.raises(ValueError):
        index.page(10, 3)


# --- the timeline -------------------------------------------------------------------------------


def test_the_timeline_of_the_real_job(job):
    timeline = timeline_of(job.result_path)
    assert timeline["total_frames"] == 65 and timeline["fps"] == 25.0
    assert [(t["track_id"], t["segments"]) for t in timeline["tracks"]] == [(1, [[5, 21]]), (2, [[51, 60]])]
    for entry, summary in zip(timeline["tracks"], job.result.tracks, strict=True):
        assert (entry["track_id"], entry["first_frame"], entry["last_frame"], entry["frames_detected"],
                entry["frames_predicted"]) == (summary.track_id, summary.first_frame, summary.last_frame,
                                               summary.frames_detected, summary.frames_predicted)


def test_a_track_absent_for_a_while_has_two_segments(job):
    frames = [dataclasses.replace(f, people=()) if 10 <= f.index <= 12 else f for f in job.result.frames]
    tally = TimelineTally()
    tally.begin(job.result.header)
    for frame in frames:
        tally.frame(frame)
    (man, cyclist) = tally.body()["tracks"]
    assert man["segments"] == [[5, 9], [13, 21]] and man["frames_detected"] == 11
    assert cyclist["segments"] == [[51, 60]]


# --- media tokens -------------------------------------------------------------------------------


def test_media_tokens_are_scoped_to_one_jobs_video_and_expire():
    now = [1_000_000.0]
    tokens = MediaTokens.from_bearer_tokens(["b", "a"], ttl_s=60, clock=lambda: now[0])
    token = tokens.issue("job1")
    assert token.expires_at == 1_000_060 and tokens.verify(token.token, "job1")
    assert "a" not in token.token.split(".")[1] or len(token.token) > 40  # a MAC, not the bearer token
    assert not tokens.verify(token.token, "job2") and not tokens.verify(token.token, "job1", scope="result")
    # another replica with the same bearer tokens (in any order) accepts it; other tokens do not
    assert MediaTokens.from_bearer_tokens(["a", "b"], clock=lambda: now[0]).verify(token.token, "job1")
    assert not MediaTokens.from_bearer_tokens(["a", "c"], clock=lambda: now[0]).verify(token.token, "job1")
    expires, mac = token.token.split(".")
    assert not tokens.verify(f"{int(expires) + 3600}.{mac}", "job1")  # a later expiry is not signed
    for bad in ("", "abc", "123.", ".abc", f"x{token.token}"):
        assert not tokens.verify(bad, "job1")
    now[0] += 61
    assert not tokens.verify(token.token, "job1")
    assert tokens.issue("job1", not_after=now[0] + 5).expires_at == int(now[0] + 5)  # the job's own end
    with pytest.raises(ValueError):
        MediaTokens(b"short")


# --- the page's files ---------------------------------------------------------------------------


def test_the_page_is_self_contained():
    html = viewer.asset(viewer.PAGE).decode()
    references = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sorted(references) == ["../../viewer/viewer.css", "../../viewer/viewer.js", "data:,"]
    for name in viewer.ASSETS:
        text = viewer.asset(name).decode()
        assert not re.search(r"https?://", text), name  # no CDN, no remote file
        if name.endswith(".css"):
            assert not re.search(r"@import|@font-face|url\(", text)  # no web font, no image to fetch
        if name.endswith(".js"):
            imports = re.findall(r'from "([^"]+)"', text)
            assert all(i.startswith("./") and i[2:] in viewer.ASSETS for i in imports), (name, imports)
    with pytest.raises(KeyError):
        viewer.asset("../__init__.py")


@pytest.mark.slow  # builds a wheel
def test_the_wheel_ships_the_page(tmp_path):
    """``[tool.setuptools.package-data]``: a wheel built from the sources has every file the
    service serves for the page (built from a copy, so that no build folder is left here)."""
    import shutil
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[2]
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    for package in ("pose_pipeline", "deployments"):
        shutil.copytree(root / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"pose_pipeline/viewer/{name}" for name in viewer.ASSETS} <= names
