"""A self-contained binary form for an engine's session state: a JSON header and raw arrays.

Layout: the engine's magic line, the header's length (uint32 LE), the JSON header (floats
written with ``repr``, which round-trips exactly), then the C-order arrays it lists.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InternalError


@dataclass(frozen=True)
class StateFormat:
    """One engine's state: its magic line, and the format and engine version it was written
    with, which a restore must match (another version may track differently: continuing
    would mix two behaviours)."""

    magic: bytes
    format: int
    engine_version: str
    engine: str  # for messages: "motion engine"

    def pack(self, header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> bytes:
        stamp = {"format": self.format, "engine_version": self.engine_version}
        return pack_state(self.magic, {**stamp, **header}, arrays or {})

    def unpack(self, state: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        header, arrays = unpack_state(self.magic, state, self.engine)
        written_by = (header.get("format"), header.get("engine_version"))
        if written_by != (self.format, self.engine_version):
            raise InternalError(f"the state was written by {self.engine} {written_by[1]!r} (state format "
                                f"{written_by[0]!r}); this is {self.engine_version!r} (format {self.format})")
        return header, arrays


def pack_state(magic: bytes, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    layout, blobs, offset = [], [], 0
    for name, array in arrays.items():
        data = np.ascontiguousarray(array).tobytes()
        layout.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape), "offset": offset})
        blobs.append(data)
        offset += len(data)
    text = json.dumps({**header, "arrays": layout}, sort_keys=True, allow_nan=False).encode()
    return b"".join([magic, struct.pack("<I", len(text)), text, *blobs])


def unpack_state(magic: bytes, state: bytes, what: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The inverse of ``pack_state``; raises ``InternalError`` naming ``what`` for anything else."""
    if not state.startswith(magic):
        raise InternalError(f"not a {what} state")
    start = len(magic)
    try:
        (length,) = struct.unpack_from("<I", state, start)
        header = json.loads(state[start + 4:start + 4 + length])
        body = memoryview(state)[start + 4 + length:]
        arrays = {}
        for item in header.pop("arrays"):
            dtype = np.dtype(item["dtype"])
            count = int(np.prod(item["shape"], dtype=np.int64))
            flat = np.frombuffer(body, dtype=dtype, count=count, offset=item["offset"])
            arrays[item["name"]] = flat.reshape(item["shape"]).copy()
    except (struct.error, ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise InternalError(f"the {what} state is damaged: {exc}") from None
    return header, arrays
