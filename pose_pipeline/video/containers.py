"""What kind of file an upload is, read from its first bytes and its container header.

FFmpeg names a whole family of formats at once and trusts headers; the functions here tell
MP4 from MOV and MKV from WebM, read the frame count only from an index that counts frames,
and find files whose header describes more data than the file holds (a cut-off upload).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av

from ..errors import CorruptVideo, NotAMediaFile

# Decode order differs from presentation order by at most this many packets (H.264/HEVC
# allow 16 reordered frames).
REORDER_WINDOW = 32


def read_head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(1024)


def is_iso_media(head: bytes) -> bool:
    """MP4, MOV and relatives start with an ``ftyp`` box."""
    return head[4:8] == b"ftyp"


def open_media(path: Path, head: bytes) -> Any:
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError:
        pass
    if is_iso_media(head):  # an MP4/MOV whose index is missing: almost always a cut-off upload
        raise CorruptVideo("the file is an MP4/MOV whose index (moov) is missing or damaged; the upload "
                           "was probably cut off: upload it again", frame=0, time_s=0.0) from None
    raise NotAMediaFile("the file is not a video FFmpeg can read (unknown or damaged format); "
                        "upload an MP4, MOV, MKV or WebM video") from None


def indexed_frames(stream: Any, head: bytes) -> int:
    """The frame count of an MP4/MOV index, else 0. Other headers' counts are not frames:
    AVI counts the empty chunks that stand for dropped frames, for one."""
    return stream.frames if is_iso_media(head) else 0


def video_stream(container: Any) -> Any:
    """The first video stream that is a real video, not a cover picture of an audio file."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def container_name(container: Any, head: bytes) -> str:
    """mp4, mov, mkv, webm, or FFmpeg's format name: FFmpeg names a whole family at once."""
    names = container.format.name.split(",")
    if is_iso_media(head):
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if "matroska" in names:
        return "webm" if b"webm" in head[:64] else "mkv"
    return names[0]



def stream_duration(stream: Any) -> float | None:
    """The video stream's own duration, if the file states it."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION")  # Matroska keeps it as a tag, "HH:MM:SS.nnnnnnnnn"
    if tag:
        try:
            hours, minutes, seconds = tag.split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        except ValueError:
            return None
    return None



def check_not_cut_off(path: Path, head: bytes, size: int, container: Any, stream: Any) -> None:
    """Refuse a file whose header describes more data than the file holds (a cut-off upload)."""
    if is_iso_media(head):
        cut = _first_sample_past(stream, size)
    elif (declared := _matroska_segment_end(head)) is not None and declared > size:
        cut = _last_packet(container, stream)
    else:
        return
    if cut is not None:
        frame, time_s = cut
        raise CorruptVideo(f"the file is cut off at frame {frame} ({time_s:.3f} s): its header describes "
                           "more data than the file holds; upload it again, completely",
                           frame=frame, time_s=round(time_s, 6))


def _first_sample_past(stream: Any, size: int) -> tuple[int, float] | None:
    """(index, time) of the first video sample in the MP4/MOV index that lies past the file's end."""
    entries = stream.index_entries
    if not len(entries) or entries[len(entries) - 1].pos + entries[len(entries) - 1].size <= size:
        return None
    low, high = 0, len(entries) - 1  # samples are stored in order: find the first one past the end
    while low < high:
        middle = (low + high) // 2
        if entries[middle].pos + entries[middle].size > size:
            high = middle
        else:
            low = middle + 1
    start = stream.start_time or 0
    return low, max(0.0, float((entries[low].timestamp - start) * stream.time_base))


def _matroska_segment_end(head: bytes) -> int | None:
    """Where the Matroska/WebM Segment ends by its header; None if not Matroska or size unknown."""
    if head[:4] != b"\x1a\x45\xdf\xa3":  # EBML header
        return None
    size, length = _ebml_size(head, 4)
    segment = 4 + length + (size or 0)
    if head[segment:segment + 4] != b"\x18\x53\x80\x67":  # Segment
        return None
    size, length = _ebml_size(head, segment + 4)
    return None if size is None else segment + 4 + length + size


def _ebml_size(data: bytes, pos: int) -> tuple[int | None, int]:
    """An EBML variable-length size at ``pos``: (value or None if "unknown", its length in bytes)."""
    if pos >= len(data) or data[pos] == 0:
        return None, 1
    length = 9 - data[pos].bit_length()
    value = int.from_bytes(data[pos:pos + length], "big") & ((1 << (7 * length)) - 1)
    return (None if value == (1 << (7 * length)) - 1 else value), length


def _last_packet(container: Any, stream: Any) -> tuple[int, float]:
    """(index, time) of the last video packet, which may be incomplete; reads the whole file."""
    count, last = 0, 0
    container.seek(0)
    for packet in container.demux(stream):
        if packet.pts is not None and packet.size:
            count, last = count + 1, max(last, packet.pts)
    return max(0, count - 1), float((last - (stream.start_time or 0)) * stream.time_base)

