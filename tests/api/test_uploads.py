"""``uploads.receive`` fed the way Starlette feeds it: an async generator of byte pieces.

Multipart bodies are encoded by httpx, as a real client would send them, and cut into small
pieces so that boundaries and headers fall across piece edges. In every error case the
destination file must not exist afterwards.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest

from pose_pipeline.errors import EmptyUpload, FileTooLarge, InvalidRequest, UnsupportedMediaType
from pose_pipeline.api.uploads import Upload, receive

VIDEO = os.urandom(50_000)  # stands for a video: receive() never looks inside one
PIECE = 1000


class Body:
    """An async iterator over ``data`` in pieces of ``size`` bytes that counts what was read."""

    def __init__(self, data: bytes, size: int = PIECE) -> None:
        self.pieces = [data[i:i + size] for i in range(0, len(data), size)]
        self.consumed = 0

    async def __aiter__(self):
        for piece in self.pieces:
            self.consumed += 1
            yield piece


def multipart(files: dict | None = None, data: dict | None = None) -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data request as httpx encodes it."""
    request = httpx.Request("POST", "http://service/v1/jobs", files=files, data=data)
    return request.read(), request.headers["content-type"]


def accept(body: bytes | Body, content_type: str, dest: Path, max_bytes: int = 1_000_000,
           filename: str = "") -> Upload:
    body = body if isinstance(body, Body) else Body(body, 7)
    return asyncio.run(receive(body.__aiter__(), content_type, dest, max_bytes, filename=filename))


def refuse(error: type, body: bytes | Body, content_type: str, dest: Path, match: str | None = None,
           **kwargs) -> Exception:
    """Assert that the upload fails with ``error`` and leaves no file behind."""
    with pytest.raises(error, match=match) as info:
        accept(body, content_type, dest, **kwargs)
    assert not dest.exists()
    return info.value


@pytest.fixture
def dest(tmp_path) -> Path:
    return tmp_path / "upload.part"


# --- raw bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["video/mp4", "application/octet-stream", "Video/QuickTime; x=1"])
def test_raw_body_is_written_exactly(dest, content_type):
    upload = accept(Body(VIDEO), content_type, dest, filename="clip.mp4")
    assert (upload.path, upload.size, upload.filename, upload.fields) == (dest, len(VIDEO), "clip.mp4", {})
    assert dest.read_bytes() == VIDEO


def test_raw_body_over_the_limit_is_cut_off_at_once(dest):
    body = Body(VIDEO)  # 50 pieces of 1000 bytes
    error = refuse(FileTooLarge, body, "video/mp4", dest, max_bytes=10_500)
    assert body.consumed == 11  # stopped at the piece that passed the limit
    assert error.details == {"limit_bytes": 10_500} and error.status == 413


def test_a_body_exactly_at_the_limit_is_accepted(dest):
    assert accept(Body(VIDEO), "video/mp4", dest, max_bytes=len(VIDEO)).size == len(VIDEO)


def test_empty_body_is_refused(dest):
    refuse(EmptyUpload, b"", "video/mp4", dest)


@pytest.mark.parametrize("reference", [b"/etc/passwd", b"https://example.com/video.mp4", b"file:///srv/a.mp4",
                                       b"  s3://bucket/video.mp4\n"])
def test_raw_body_holding_a_path_or_url_is_refused(dest, reference):
    refuse(InvalidRequest, reference, "video/mp4", dest, match="path or URL")


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "", "application/x-www-form-urlencoded"])
def test_other_content_types_are_refused(dest, content_type):
    error = refuse(UnsupportedMediaType, VIDEO, content_type, dest)
    assert error.status == 415


# --- multipart ---------------------------------------------------------------------------------


def test_multipart_file_and_options(dest):
    body, content_type = multipart(files={"file": ("../../clip.mp4", VIDEO, "video/mp4")},
                                   data={"fps": "10", "max_side": "320", "formats": "json,npz"})
    upload = accept(body, content_type, dest)
    assert dest.read_bytes() == VIDEO
    assert (upload.size, upload.filename) == (len(VIDEO), "clip.mp4")  # no directories from the client
    assert upload.fields == {"fps": "10", "max_side": "320", "formats": "json,npz"}


def test_multipart_file_over_the_limit_is_cut_off_at_once(dest):
    body, content_type = multipart(files={"file": ("clip.mp4", VIDEO, "video/mp4")})
    pieces = Body(body)
    refuse(FileTooLarge, pieces, content_type, dest, max_bytes=10_000)
    assert pieces.consumed <= 12


def test_multipart_without_a_file_part(dest):
    body, content_type = multipart(files={"video": ("clip.mp4", b"x" * 100, "video/mp4")}, data={"fps": "5"})
    refuse(InvalidRequest, body, content_type, dest, match="no 'file' part")


@pytest.mark.parametrize("value", ["/etc/passwd", "https://example.com/video.mp4"])
def test_multipart_file_part_that_is_a_text_field(dest, value):
    # httpx only encodes multipart when there is a file; the 'file' field itself is text.
    body, content_type = multipart(files={"other": ("a.txt", b"x", "text/plain")}, data={"file": value})
    refuse(InvalidRequest, body, content_type, dest, match="not a text value")


def test_multipart_file_holding_a_path_is_refused(dest):
    body, content_type = multipart(files={"file": ("clip.mp4", b"/etc/passwd", "video/mp4")})
    refuse(InvalidRequest, body, content_type, dest, match="path or URL")


def test_multipart_with_an_empty_file(dest):
    body, content_type = multipart(files={"file": ("clip.mp4", b"", "video/mp4")})
    refuse(EmptyUpload, body, content_type, dest)


def test_multipart_with_two_files(dest):
    body, content_type = multipart(files=[("file", ("a.mp4", VIDEO, "video/mp4")),
                                          ("file", ("b.mp4", VIDEO, "video/mp4"))])
    refuse(InvalidRequest, body, content_type, dest, match="one 'file' part")


def truncated(body: bytes) -> bytes:
    return body[: len(body) - 300]  # cut inside the file: no closing boundary


@pytest.mark.parametrize("damage", [
    lambda body: b"this is not multipart at all\r\n" * 10,
    lambda body: body.replace(b"--", b"==", 1),  # first boundary wrong
    truncated,
], ids=["garbage", "bad-boundary", "truncated"])
def test_malformed_multipart_is_refused(dest, damage):
    body, content_type = multipart(files={"file": ("clip.mp4", VIDEO, "video/mp4")})
    refuse(InvalidRequest, damage(body), content_type, dest)


def test_multipart_without_a_boundary_parameter(dest):
    body, _ = multipart(files={"file": ("clip.mp4", VIDEO, "video/mp4")})
    refuse(InvalidRequest, body, "multipart/form-data", dest, match="boundary")
