"""Videos with PyAV (FFmpeg): what a file is, and its frames in chunks.

- ``types``: ``VideoProbe``, ``DecodeOptions``, ``DecodeCursor``, plain data (no PyAV);
- ``containers``: sniffing the container from the file's first bytes and header (MP4 or
  MOV, MKV or WebM, an index that counts frames, a file cut off before its header's end);
- ``probing``: ``probe``, which refuses a file that cannot be processed before any work is
  queued;
- ``decode``: ``ChunkDecoder``, chunks of RGB frames sized by a byte budget, resumable at a
  ``DecodeCursor`` in any process.

The names below load their module on first use: importing ``types`` alone loads no PyAV.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = ["ChunkDecoder", "DecodeCursor", "DecodeOptions", "FrameChunk", "VideoProbe", "decode_chunks", "probe",
           "reencode_command", "unsupported_codec"]
_EXPORTS = {"ChunkDecoder": "decode", "FrameChunk": "decode", "decode_chunks": "decode",
            "DecodeCursor": "types", "DecodeOptions": "types", "VideoProbe": "types",
            "probe": "probing", "reencode_command": "probing", "unsupported_codec": "probing"}

if TYPE_CHECKING:
    from .decode import ChunkDecoder, FrameChunk, decode_chunks
    from .probing import probe, reencode_command, unsupported_codec
    from .types import DecodeCursor, DecodeOptions, VideoProbe


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pose_pipeline.video' has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
