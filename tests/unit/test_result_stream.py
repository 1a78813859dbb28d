"""Reading a result JSON frame by frame (``ResultStream``): the same result as ``read_json``,
in any layout, in memory bounded by a frame."""

from __future__ import annotations

import json
import tracemalloc

import pytest
from real_jobs import bikes_window

from pose_pipeline.results import json_stream as result_stream
from pose_pipeline.results.json_stream import ResultStream
from pose_pipeline.results.schema import Frame, summarize_tracks
from pose_pipeline.results.writers import JsonWriter, read_json


@pytest.fixture(scope="module")
def job():
    return bikes_window()


def streamed(path):
    with ResultStream(path) as stream:
        frames = [f.to_dict() for f in stream.frames()]
        return stream.header.to_dict(), frames, [t.to_dict() for t in stream.tracks]


def as_read(path):
    result = read_json(path)
    return result.header.to_dict(), [f.to_dict() for f in result.frames], [t.to_dict() for t in result.tracks]


def test_the_stream_reads_what_read_json_reads_in_any_layout(job, tmp_path, monkeypatch):
    expected = as_read(job.result_path)
    assert streamed(job.result_path) == expected and len(expected[1]) == 65
    indented = tmp_path / "indented.json"  # frames across many lines, other whitespace
    indented.write_text(json.dumps(json.loads(job.result_path.read_text()), indent=3))
    assert streamed(indented) == expected
    monkeypatch.setattr(result_stream, "_BLOCK_CHARS", 7)  # every value split across reads
    assert streamed(job.result_path) == expected


@pytest.mark.slow
def test_memory_is_bounded_by_a_frame_not_the_result(job, tmp_path):
    path = tmp_path / "long.json"
    frames = [Frame(k, k, k / 25, job.result.frames[5 + k % 17].people) for k in range(4000)]
    with open(path, "w") as fp:
        writer = JsonWriter(fp)
        writer.begin(job.result.header)
        for frame in frames:
            writer.frame(frame)
        writer.end(summarize_tracks(frames))
    size = path.stat().st_size
    tracemalloc.start()
    with ResultStream(path) as stream:
        count = sum(1 for _ in stream.frames())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 4000 and size > 5_000_000
    assert peak < 1_000_000  # about one read block and one frame; the file is over 5 MB


def test_damaged_documents_are_refused(job, tmp_path):
    text = job.result_path.read_text()
    cut = tmp_path / "cut.json"
    cut.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match="not a result document"), ResultStream(cut) as stream:
        list(stream.frames())
    other = tmp_path / "v2.json"
    other.write_text(text.replace('"schema_version":"1"', '"schema_version":"2"', 1))
    with pytest.raises(ValueError, match="schema_version"):
        ResultStream(other)
    with ResultStream(job.result_path) as stream:
        list(stream.frames())
        with pytest.raises(RuntimeError):
            list(stream.frames())
