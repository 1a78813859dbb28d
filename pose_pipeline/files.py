"""Files written whole or not at all, and JSON written compactly: each mechanism once.

``atomic_write`` / ``write_atomically``: readers see the old file or the new one, never a
part. The content goes to a partial file of its own beside the target (so that two writers at
once, e.g. two replicas committing the same retried chunk, do not mix), renamed over it when
complete, and removed on an error. Writers that stream for a long time (the result files, the
overlay MP4) keep their own ``.partial`` file open across calls and rename it the same way.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary file to write that replaces ``path`` when the block ends without error."""
    path = Path(path)
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as fp:
            yield fp
        os.chmod(partial, 0o644)  # mkstemp's files are private to their owner
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def write_atomically(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """``data`` (text as UTF-8) as the whole content of ``path``, atomically."""
    with atomic_write(path) as fp:
        fp.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def compact_json(value: Any) -> str:
    """JSON without spaces; NaN and infinities refused (they are not JSON)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)
