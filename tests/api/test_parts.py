"""``parts.PartUploads`` on real files: parts appended in order, all-or-nothing, resumable,
bounded, locked against a second writer, and removed when idle."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from pose_pipeline.errors import EmptyUpload, FileTooLarge, PartTooLarge, UploadConflict, UploadNotFound
from pose_pipeline.api.parts import PartUploads

DATA = os.urandom(10_000)
MAX_PART, MAX_BYTES = 4_000, 1_000_000


async def pieces(data: bytes, size: int = 700, fail_after: int | None = None):
    """``data`` in pieces, as Starlette streams a body; raises after ``fail_after`` bytes,
    as a client that goes away does."""
    for i in range(0, len(data), size):
        if fail_after is not None and i >= fail_after:
            raise ConnectionResetError("the client went away")
        yield data[i:i + size]


def append(parts: PartUploads, upload_id: str, offset: int, data: bytes, **kwargs):
    limits = {"max_part_bytes": MAX_PART, "max_bytes": MAX_BYTES}
    body = pieces(data, fail_after=kwargs.pop("fail_after", None))
    return asyncio.run(parts.append(upload_id, offset, body, **{**limits, **kwargs}))


def send_all(parts: PartUploads, upload_id: str, data: bytes = DATA) -> None:
    for start in range(0, len(data), MAX_PART):
        upload = append(parts, upload_id, start, data[start:start + MAX_PART])
        assert upload.offset == min(start + MAX_PART, len(data))


@pytest.fixture
def parts(tmp_path) -> PartUploads:
    return PartUploads(tmp_path / "uploads")


def test_parts_in_order_make_the_file(parts, tmp_path):
    upload = parts.create("../clip.mp4", len(DATA), MAX_BYTES)
    assert (upload.filename, upload.size, upload.offset) == ("clip.mp4", len(DATA), 0)
    send_all(parts, upload.id)
    taken = parts.take(upload.id, tmp_path / "video")
    assert (tmp_path / "video").read_bytes() == DATA and taken.offset == len(DATA)
    assert list(parts.root.iterdir()) == []
    with pytest.raises(UploadNotFound):
        parts.get(upload.id)


def test_a_part_cut_short_is_dropped_whole_and_can_be_sent_again(parts, tmp_path):
    upload = parts.create("clip.mp4", None, MAX_BYTES)
    append(parts, upload.id, 0, DATA[:MAX_PART])
    with pytest.raises(ConnectionResetError):
        append(parts, upload.id, MAX_PART, DATA[MAX_PART:2 * MAX_PART], fail_after=2_100)
    assert parts.get(upload.id).offset == MAX_PART  # not 2_100 bytes into the part
    for start in range(MAX_PART, len(DATA), MAX_PART):  # go on from where the upload ends
        append(parts, upload.id, start, DATA[start:start + MAX_PART])
    parts.take(upload.id, tmp_path / "video")
    assert (tmp_path / "video").read_bytes() == DATA


def test_a_part_not_at_the_end_is_refused_with_the_offset(parts):
    upload = parts.create("clip.mp4", None, MAX_BYTES)
    append(parts, upload.id, 0, DATA[:MAX_PART])
    for wrong in (0, MAX_PART + 1):
        with pytest.raises(UploadConflict) as info:
            append(parts, upload.id, wrong, DATA[:MAX_PART])
        assert info.value.details["offset"] == MAX_PART


@pytest.mark.parametrize("size, data, error, limit", [
    (None, DATA[:MAX_PART + 1], PartTooLarge, MAX_PART),  # one part over the part limit
    (100, DATA[:101], FileTooLarge, 100),  # more than announced
])
def test_parts_past_a_limit_are_refused_and_not_kept(parts, size, data, error, limit):
    upload = parts.create("clip.mp4", size, MAX_BYTES)
    with pytest.raises(error) as info:
        append(parts, upload.id, 0, data)
    assert info.value.details["limit_bytes"] == limit
    assert parts.get(upload.id).offset == 0


def test_the_upload_limit_counts_all_parts(parts):
    upload = parts.create("clip.mp4", None, MAX_BYTES)
    append(parts, upload.id, 0, DATA[:3_000], max_bytes=5_000)
    with pytest.raises(FileTooLarge, match="limits.max_upload_bytes"):
        append(parts, upload.id, 3_000, DATA[3_000:6_000], max_bytes=5_000)
    assert parts.get(upload.id).offset == 3_000
    with pytest.raises(FileTooLarge):
        parts.create("clip.mp4", MAX_BYTES + 1, MAX_BYTES)  # announced too large: refused at once


def test_a_second_writer_is_refused_while_a_part_is_received(parts):
    upload = parts.create("clip.mp4", None, MAX_BYTES)

    async def both():
        started = asyncio.Event()

        async def slow():
            yield DATA[:100]
            started.set()
            await asyncio.sleep(0.2)
            yield DATA[100:200]

        first = asyncio.create_task(parts.append(upload.id, 0, slow(), MAX_PART, MAX_BYTES))
        await started.wait()
        with pytest.raises(UploadConflict, match="being received"):
            await parts.append(upload.id, 0, pieces(DATA[:100]), MAX_PART, MAX_BYTES)
        return await first

    assert asyncio.run(both()).offset == 200


def test_taking_an_incomplete_or_empty_upload_is_refused(parts, tmp_path):
    upload = parts.create("clip.mp4", len(DATA), MAX_BYTES)
    append(parts, upload.id, 0, DATA[:MAX_PART])
    with pytest.raises(UploadConflict, match="incomplete") as info:
        parts.take(upload.id, tmp_path / "video")
    assert info.value.details["offset"] == MAX_PART and not (tmp_path / "video").exists()
    with pytest.raises(EmptyUpload):
        parts.take(parts.create("empty.mp4", None, MAX_BYTES).id, tmp_path / "video")


@pytest.mark.parametrize("upload_id", ["0" * 31, "../../etc/passwd", "A" * 32, ""])
def test_ids_that_create_never_makes_are_not_found(parts, upload_id):
    with pytest.raises(UploadNotFound):
        parts.get(upload_id)
    with pytest.raises(UploadNotFound):
        append(parts, upload_id, 0, b"x")


def test_delete_and_idle_expiry_remove_the_files(parts):
    deleted, idle, active = (parts.create(f"{n}.mp4", None, MAX_BYTES) for n in ("deleted", "idle", "active"))
    parts.delete(deleted.id)
    with pytest.raises(UploadNotFound):
        parts.delete(deleted.id)
    append(parts, idle.id, 0, DATA[:10])
    an_hour_ago = time.time() - 3600
    os.utime(parts.root / f"{idle.id}.data", (an_hour_ago, an_hour_ago))
    assert parts.expire(idle_s=600) == [idle.id]
    assert sorted(p.name for p in parts.root.iterdir()) == [f"{active.id}.data", f"{active.id}.json"]


def test_an_idempotency_key_holds_its_upload_until_it_is_gone(parts, tmp_path):
    first = parts.create("a.mp4", len(DATA), MAX_BYTES, idempotency_key="k")
    assert parts.create("a.mp4", len(DATA), MAX_BYTES, idempotency_key="k") == first
    send_all(parts, first.id)
    parts.take(first.id, tmp_path / "video")  # its job took it: the key is free again
    second = parts.create("a.mp4", len(DATA), MAX_BYTES, idempotency_key="k")
    assert second.id != first.id
    parts.delete(second.id)
    parts.expire(idle_s=600)  # the key of a deleted upload goes with the idle ones
    assert list((parts.root / "keys").iterdir()) == []
