"""Uploads sent in parts, for large files.

Ray Serve's HTTP proxy reads a request body as fast as the client sends it and holds it
until the replica has consumed it: a 1 GiB upload in one request costs up to 1 GiB of
memory in the proxy and the ingress (docs/failures.md, "Known limits"). Sent in parts of
at most ``limits.max_part_bytes``, no process holds more than one part per request, and an
upload cut by a network failure resumes where it stopped instead of starting over.

On disk, in one folder that every ingress replica shares: ``<id>.data`` (the bytes so far:
its size is the upload's offset) and ``<id>.json`` (file name, announced size, creation
time). A part is appended under an exclusive lock and is all-or-nothing: if it fails, or
the client goes away, the data is cut back to where the part began, so the client simply
sends that part again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import EmptyUpload, FileTooLarge, IdempotencyKeyReused, PartTooLarge, UploadConflict, UploadNotFound
from ..files import compact_json, write_atomically
from .uploads import too_large

_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class PartialUpload:
    id: str
    filename: str
    size: int | None  # announced by the client when it created the upload, if it did
    offset: int  # bytes received so far
    created_at: float
    updated_at: float

    def to_dict(self) -> dict:
        return asdict(self)


class PartUploads:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def create(self, filename: str, size: int | None, max_bytes: int,
               idempotency_key: str | None = None) -> PartialUpload:
        """A new upload; with ``idempotency_key``, the upload that key made if it still exists
        (``idempotency_key_reused`` if it was made for another file name or size)."""
        if size is not None and size > max_bytes:
            raise FileTooLarge(f"the announced size ({size} bytes) is larger than the limit of {max_bytes} "
                               "bytes (limits.max_upload_bytes)", limit_bytes=max_bytes)
        filename = os.path.basename(filename)
        if idempotency_key is not None:
            earlier = self._keyed(idempotency_key)
            if earlier is not None:
                return _same_upload(earlier, filename, size)
        upload_id = uuid.uuid4().hex
        self._data(upload_id).touch()
        meta = {"filename": filename, "size": size, "created_at": time.time()}
        write_atomically(self._meta(upload_id), compact_json(meta))
        if idempotency_key is not None and not self._claim(idempotency_key, upload_id):
            self._remove(upload_id)  # the same key at the same moment: the other request's upload
            earlier = self._keyed(idempotency_key)
            if earlier is None:
                raise IdempotencyKeyReused("the Idempotency-Key's upload has just ended; use a new key")
            return _same_upload(earlier, filename, size)
        return self.get(upload_id)

    def _key_file(self, key: str) -> Path:
        return self.root / "keys" / hashlib.sha256(key.encode()).hexdigest()

    def _keyed(self, key: str) -> PartialUpload | None:
        """The upload ``key`` made, if it still exists (a stale key is forgotten)."""
        path = self._key_file(key)
        try:
            upload_id = path.read_text().strip()
            return self.get(_checked(upload_id))
        except FileNotFoundError:
            return None
        except (UploadNotFound, ValueError, OSError):  # taken by its job, deleted or expired
            path.unlink(missing_ok=True)
            return None

    def _claim(self, key: str, upload_id: str) -> bool:
        """Tie ``key`` to ``upload_id`` unless another upload holds it: a link made under the
        key's name holds the id whole or not at all, and only one link can be made."""
        path = self._key_file(key)
        path.parent.mkdir(exist_ok=True)
        partial = path.with_name(f".{path.name}.{upload_id}")
        partial.write_text(upload_id)
        try:
            os.link(partial, path)
            return True
        except FileExistsError:
            return False
        finally:
            partial.unlink(missing_ok=True)

    def get(self, upload_id: str) -> PartialUpload:
        try:
            meta = json.loads(self._meta(upload_id).read_text())
            stat = self._data(upload_id).stat()
        except (OSError, ValueError):
            raise UploadNotFound(f"no upload {upload_id!r} (finished, deleted, expired or never created)",
                                 upload_id=upload_id) from None
        return PartialUpload(upload_id, meta["filename"], meta["size"], stat.st_size, meta["created_at"],
                             stat.st_mtime)

    async def append(self, upload_id: str, offset: int, body: AsyncIterator[bytes], max_part_bytes: int,
                     max_bytes: int) -> PartialUpload:
        """Append one part that starts at ``offset``; all of it or nothing."""
        upload = self.get(upload_id)
        limit = min(max_bytes, upload.size) if upload.size is not None else max_bytes
        with self._locked(upload_id) as data:
            start = os.fstat(data.fileno()).st_size
            if offset != start:
                raise UploadConflict(f"the part starts at byte {offset}, but the upload has {start} bytes: "
                                     f"send from byte {start}", offset=start)
            data.seek(start)
            received = 0
            try:
                async for piece in body:
                    received += len(piece)
                    if received > max_part_bytes:
                        raise part_too_large(max_part_bytes)
                    if start + received > limit:
                        raise _past_limit(limit, upload.size, max_bytes)
                    data.write(piece)
                data.flush()
            except BaseException:
                data.truncate(start)
                raise
        return self.get(upload_id)

    def take(self, upload_id: str, dest: Path) -> PartialUpload:
        """Move the complete upload's data to ``dest`` and forget the upload."""
        with self._locked(upload_id):
            upload = self.get(upload_id)
            if upload.size is not None and upload.offset != upload.size:
                raise UploadConflict(f"the upload is incomplete: {upload.offset} of {upload.size} bytes "
                                     "received", offset=upload.offset)
            if upload.offset == 0:
                raise EmptyUpload("the uploaded file is empty")
            os.replace(self._data(upload_id), dest)
            self._meta(upload_id).unlink(missing_ok=True)
        return upload

    def delete(self, upload_id: str) -> None:
        self.get(upload_id)
        self._remove(upload_id)

    def expire(self, idle_s: float) -> list[str]:
        """Remove uploads that received nothing for ``idle_s`` seconds; their ids."""
        cutoff, removed = time.time() - idle_s, []
        for data in self.root.glob("*.data"):
            try:
                idle = data.stat().st_mtime < cutoff
            except FileNotFoundError:  # taken or deleted meanwhile
                continue
            if idle:
                self._remove(data.stem)
                removed.append(data.stem)
        for key in self.root.glob("keys/[0-9a-f]*"):  # keys whose upload is gone (taken, deleted, expired)
            try:
                gone = not self._meta(key.read_text().strip()).exists()
            except OSError:
                continue
            if gone:
                key.unlink(missing_ok=True)
        return removed

    def _remove(self, upload_id: str) -> None:
        self._meta(upload_id).unlink(missing_ok=True)
        self._data(upload_id).unlink(missing_ok=True)

    @contextmanager
    def _locked(self, upload_id: str) -> Iterator[BinaryIO]:
        """The data file, opened and locked; a second writer is refused, not queued."""
        try:
            data = open(self._data(upload_id), "r+b")
        except FileNotFoundError:
            raise UploadNotFound(f"no upload {upload_id!r}", upload_id=upload_id) from None
        with data:
            try:
                fcntl.flock(data, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UploadConflict("another part of this upload is being received; send parts one "
                                     "after the other", offset=None) from None
            yield data

    def _data(self, upload_id: str) -> Path:
        return self.root / f"{_checked(upload_id)}.data"

    def _meta(self, upload_id: str) -> Path:
        return self.root / f"{_checked(upload_id)}.json"


def _same_upload(upload: PartialUpload, filename: str, size: int | None) -> PartialUpload:
    if (upload.filename, upload.size) != (filename, size):
        raise IdempotencyKeyReused(f"this Idempotency-Key made upload {upload.id} for another file (name or size); "
                                   "use a new key", upload_id=upload.id)
    return upload


def part_too_large(max_part_bytes: int) -> PartTooLarge:
    return PartTooLarge(f"a part may hold at most {max_part_bytes} bytes (limits.max_part_bytes)",
                        limit_bytes=max_part_bytes)


def _past_limit(limit: int, announced: int | None, max_bytes: int) -> FileTooLarge:
    if announced is not None and limit == announced < max_bytes:
        return FileTooLarge(f"the parts add up to more than the announced size of {announced} bytes",
                            limit_bytes=announced)
    return too_large(max_bytes)


def _checked(upload_id: str) -> str:
    if not _ID.fullmatch(upload_id):  # ids become file names: nothing but what create() makes
        raise UploadNotFound(f"no upload {upload_id!r}", upload_id=upload_id)
    return upload_id
