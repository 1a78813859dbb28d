"""Receiving an uploaded video: streamed to a file in pieces, never held in memory, and
cut off as soon as it passes the size limit.

Two encodings are accepted: the raw file as the request body (``Content-Type: video/*``
or ``application/octet-stream``), or ``multipart/form-data`` with the file in a part
named ``file`` and options as other parts. The service only ever reads the bytes sent:
a part or body that holds a path or URL instead of a file is refused.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from ..errors import EmptyUpload, FileTooLarge, InvalidRequest, UnsupportedMediaType

RAW_TYPES = ("application/octet-stream",)
_MAX_FIELD_BYTES = 4096
_MAX_FIELDS = 32
_LOOKS_LIKE_A_REFERENCE = (b"/", b"file:", b"http://", b"https://", b"s3://", b"gs://", b"ftp://", b"~/", b"C:\\")


@dataclass
class Upload:
    path: Path
    size: int
    filename: str
    fields: dict[str, str] = field(default_factory=dict)


async def receive(body: AsyncIterator[bytes], content_type: str, dest: Path, max_bytes: int,
                  filename: str = "") -> Upload:
    """Write the upload to ``dest``; on any error ``dest`` is removed and the error raised."""
    raw_type, params = parse_options_header(content_type or "")
    media_type = raw_type.decode("latin-1").lower()  # a header's bytes, whatever they are
    try:
        if media_type == "multipart/form-data":
            if b"boundary" not in params:
                raise InvalidRequest("multipart request without a boundary")
            upload = await _receive_multipart(body, params[b"boundary"], dest, max_bytes)
        elif media_type.startswith("video/") or media_type in RAW_TYPES:
            size = await _receive_raw(body, dest, max_bytes)
            upload = Upload(dest, size, filename)
        else:
            raise UnsupportedMediaType(
                f"content type {media_type or '(none)'!r} is not accepted: send the video as the body "
                "(video/* or application/octet-stream) or as multipart/form-data with a 'file' part")
        check_content(upload)
        return upload
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


async def _receive_raw(body: AsyncIterator[bytes], dest: Path, max_bytes: int) -> int:
    size = 0
    with open(dest, "wb") as out:
        async for piece in body:
            size += len(piece)
            if size > max_bytes:
                raise too_large(max_bytes)
            out.write(piece)
    return size


def too_large(max_bytes: int) -> FileTooLarge:
    return FileTooLarge(f"the upload is larger than the limit of {max_bytes} bytes (limits.max_upload_bytes)",
                        limit_bytes=max_bytes)


class _MultipartSink:
    """Callbacks for python-multipart's streaming parser: the 'file' part goes to disk,
    other parts (small) are kept as option values."""

    def __init__(self, dest: Path, max_bytes: int) -> None:
        self.dest, self.max_bytes = dest, max_bytes
        self.out: BinaryIO | None = None
        self.size = 0
        self.filename: str | None = None
        self.fields: dict[str, str] = {}
        self._header_name = b""
        self._header_value = b""
        self._disposition: dict[bytes, bytes] = {}
        self._value = bytearray()
        self._in_file = False
        self.file_parts = 0

    def on_part_begin(self) -> None:
        self._disposition, self._value, self._in_file = {}, bytearray(), False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = parse_options_header(self._header_value)[1]
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        name = self._disposition.get(b"name", b"").decode()
        if name == "file":
            if b"filename" not in self._disposition:
                raise InvalidRequest("the 'file' part must be an uploaded file (with a filename), not a text "
                                     "value: the service never reads server paths or fetches URLs")
            self.file_parts += 1
            if self.file_parts > 1:
                raise InvalidRequest("send one 'file' part per request")
            self.filename = os.path.basename(self._disposition[b"filename"].decode(errors="replace"))
            self.out = open(self.dest, "wb")
            self._in_file = True
        elif not name:
            raise InvalidRequest("a multipart part has no name")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file and self.out is not None:
            self.size += end - start
            if self.size > self.max_bytes:
                raise too_large(self.max_bytes)
            self.out.write(data[start:end])
        else:
            self._value += data[start:end]
            if len(self._value) > _MAX_FIELD_BYTES:
                raise InvalidRequest(f"an option value is longer than {_MAX_FIELD_BYTES} bytes")

    def on_part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            return
        if len(self.fields) >= _MAX_FIELDS:
            raise InvalidRequest("too many form fields")
        self.fields[self._disposition.get(b"name", b"").decode()] = self._value.decode(errors="replace")

    def close(self) -> None:
        if self.out is not None:
            self.out.close()


async def _receive_multipart(body: AsyncIterator[bytes], boundary: bytes, dest: Path, max_bytes: int) -> Upload:
    sink = _MultipartSink(dest, max_bytes)
    callbacks: Any = {name: getattr(sink, name) for name in dir(sink) if name.startswith("on_")}
    try:
        parser = MultipartParser(boundary, callbacks)
    except Exception as exc:  # the parser refuses the boundary itself (e.g. over 256 bytes)
        raise InvalidRequest(f"malformed multipart body: {exc}") from None
    try:
        async for piece in body:
            try:
                parser.write(piece)
            except (InvalidRequest, FileTooLarge):
                raise
            except Exception as exc:  # the parser's own errors: the body is not valid multipart
                raise InvalidRequest(f"malformed multipart body: {exc}") from None
        parser.finalize()
        if parser.state != MultipartState.END:  # finalize() itself does not check
            raise InvalidRequest("malformed multipart body: it ends before its closing boundary "
                                 "(the upload was cut short)")
    finally:
        sink.close()
    if sink.filename is None:
        raise InvalidRequest("the multipart body has no 'file' part")
    if sink.out is None or sink.size == 0 and not dest.exists():
        raise EmptyUpload("the uploaded file is empty")
    return Upload(dest, sink.size, sink.filename, sink.fields)


def check_content(upload: Upload) -> None:
    if upload.size == 0:
        raise EmptyUpload("the uploaded file is empty")
    if upload.size < 4096:
        with open(upload.path, "rb") as fh:
            head = fh.read().strip()
        if head.startswith(_LOOKS_LIKE_A_REFERENCE) and b"\n" not in head:
            raise InvalidRequest("the upload holds a path or URL, not a video: send the file's bytes "
                                 "(the service never reads server paths or fetches URLs)")
