"""Reading a result JSON document frame by frame, in memory bounded by one frame.

``serialize.read_json`` loads the whole document: for a ten-minute video that is tens of
thousands of ``Frame`` objects. ``ResultStream`` parses the header fields, then yields the
frames one at a time, then reads ``tracks``. It relies only on the key order of schema v1
(header fields, ``frames``, ``tracks``: docs/result-schema.md), not on line breaks, so it
reads any valid document in that order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .schema import Frame, ResultHeader, TrackSummary

_BLOCK_CHARS = 1 << 16
_WHITESPACE = " \t\r\n"


class ResultStream:
    """``header`` is read on open; iterate ``frames()`` once; ``tracks`` is set after it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fp = open(self.path, encoding="utf-8")
        self._buffer = ""
        self._pos = 0
        self._eof = False
        self.tracks: tuple[TrackSummary, ...] | None = None
        try:
            self._expect("{")
            fields: dict[str, Any] = {}
            while True:
                key = self._next_key()
                if key is None:
                    raise ValueError(f"{self.path}: the document has no frames")
                if key == "frames":
                    break
                fields[key] = self._value()
            self.header = ResultHeader.from_dict(fields)
            self._expect("[")
        except BaseException:
            self._fp.close()
            raise
        self._started = False

    def __enter__(self) -> ResultStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._fp.close()

    def frames(self) -> Iterator[Frame]:
        if self._started:
            raise RuntimeError("frames() can be iterated only once")
        self._started = True
        if self._peek() == "]":
            self._pos += 1
        else:
            while True:
                yield Frame.from_dict(self._value())
                separator = self._peek()
                self._pos += 1
                if separator == "]":
                    break
                if separator != ",":
                    raise self._error(f"',' or ']' after a frame, found {separator!r}")
        self._read_rest()

    def _read_rest(self) -> None:
        """The keys after ``frames``: ``tracks`` in schema v1."""
        while (key := self._next_key()) is not None:
            value = self._value()
            if key == "tracks":
                self.tracks = tuple(TrackSummary.from_dict(t) for t in value)

    # --- a minimal incremental tokenizer: whole JSON values come from json's raw_decode ------

    def _next_key(self) -> str | None:
        """The next key of the top-level object, after its ':'; None at its closing '}'."""
        char = self._peek()
        if char == ",":
            self._pos += 1
            char = self._peek()
        if char == "}":
            self._pos += 1
            return None
        key = self._value()
        if not isinstance(key, str):
            raise self._error("a key")
        self._expect(":")
        return key

    def _value(self) -> Any:
        decoder = json.JSONDecoder()
        while True:
            self._peek()
            try:
                value, end = decoder.raw_decode(self._buffer, self._pos)
            except json.JSONDecodeError:
                if self._eof:
                    raise self._error("a complete JSON value") from None
                self._fill()
                continue
            # A number or literal that ends with the buffer may continue in the next block.
            if end == len(self._buffer) and not self._eof:
                self._fill()
                continue
            self._pos = end
            return value

    def _expect(self, char: str) -> None:
        if self._peek() != char:
            raise self._error(repr(char))
        self._pos += 1

    def _peek(self) -> str:
        """The next character that is not whitespace, without consuming it ('' at the end)."""
        while True:
            while self._pos < len(self._buffer) and self._buffer[self._pos] in _WHITESPACE:
                self._pos += 1
            if self._pos < len(self._buffer) or self._eof:
                return self._buffer[self._pos:self._pos + 1]
            self._fill()

    def _fill(self) -> None:
        block = self._fp.read(_BLOCK_CHARS)
        if not block:
            self._eof = True
        # Drop what was consumed: the buffer holds at most the current value and one block.
        self._buffer = self._buffer[self._pos:] + block
        self._pos = 0

    def _error(self, expected: str) -> ValueError:
        return ValueError(f"{self.path}: not a result document: expected {expected} "
                          f"near {self._buffer[self._pos:self._pos + 40]!r}")
