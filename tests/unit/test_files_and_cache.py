"""The mechanisms written once: atomic writes, compact JSON (pose_pipeline/files.py), and the
LRU cache (pose_pipeline/jobs/cache.py)."""

from __future__ import annotations

import json
import threading

import pytest

from pose_pipeline.files import atomic_write, compact_json, write_atomically
from pose_pipeline.jobs.cache import LruCache


def test_an_atomic_write_replaces_the_file_whole_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    write_atomically(target, "new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["result.json"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_a_failed_atomic_write_keeps_the_old_file_and_removes_its_partial(tmp_path):
    target = tmp_path / "state"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as fp:
        fp.write(b"half")
        raise RuntimeError("disk gone")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["state"]


def test_writers_at_once_each_have_their_partial_and_one_wins_whole(tmp_path):
    target = tmp_path / "chunk"
    contents = [bytes([i]) * 100_000 for i in range(8)]
    threads = [threading.Thread(target=write_atomically, args=(target, data)) for data in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert target.read_bytes() in contents and [p.name for p in tmp_path.iterdir()] == ["chunk"]


def test_compact_json_has_no_spaces_and_refuses_nan():
    assert compact_json({"a": [1, 2.5], "b": None}) == '{"a":[1,2.5],"b":null}'
    assert json.loads(compact_json({"x": "é"})) == {"x": "é"}
    with pytest.raises(ValueError):
        compact_json(float("nan"))


def test_lru_cache_drops_the_least_recently_used_and_tells():
    dropped: list[str] = []
    cache: LruCache[str, str] = LruCache(2, on_evict=dropped.append)
    cache.put("a", "A")
    cache.put("b", "B")
    assert cache.get("a") == "A"  # now "b" is the least recently used
    cache.put("c", "C")
    assert dropped == ["B"] and cache.get("b") is None
    assert cache.pop("a") == "A" and cache.get("a") is None  # taken out: not evicted
    cache.clear()
    assert dropped == ["B", "C"]
