"""Videos with PyAV (FFmpeg): what a file is, and its frames in chunks.

- ``containers``: sniffing the container from the file's first bytes and header (MP4 or
  MOV, MKV or WebM, an index that counts frames, a file cut off before its header's end);
- ``probe``: ``VideoProbe`` and ``probe``, which refuses a file that cannot be processed
  before any work is queued;
- ``decode``: ``ChunkDecoder``, chunks of RGB frames sized by a byte budget, resumable at a
  ``DecodeCursor`` in any process.
"""

from .decode import ChunkDecoder, DecodeCursor, DecodeOptions, FrameChunk, decode_chunks
from .probe import VideoProbe, probe, reencode_command, unsupported_codec

__all__ = ["ChunkDecoder", "DecodeCursor", "DecodeOptions", "FrameChunk", "VideoProbe", "decode_chunks", "probe",
           "reencode_command", "unsupported_codec"]
