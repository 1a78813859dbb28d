"""Where jobs live: their records, uploads, checkpoints and results.

``JobStore`` is the interface the service uses; ``LocalJobStore`` implements it with one
SQLite database and one directory per job under a root folder. On one machine that folder
is local; on a cluster it must be a volume every node mounts (see cluster/README.md).

A job's directory::

    upload            the uploaded video (kept with a succeeded job's results: the viewer plays it)
    chunks/000042     engine output of chunk 42 (pickled ChunkOutput)
    state             tracker state after the last committed chunk
    result.json, result.npz, result.mp4
    timeline.json, frames.index.npy   what the viewer reads (pose_pipeline/viewer/data.py)

Chunk commits are atomic and idempotent: files are written under a temporary name and
renamed, and the record only advances when it was at that chunk, so a chunk retried after
a crash is committed once.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from .config import StoreSettings
from .errors import JobNotFound
from .options import JobOptions
from .video import DecodeCursor, DecodeOptions, VideoProbe


class JobState(str, Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.succeeded, JobState.failed, JobState.cancelled)


@dataclass(frozen=True)
class JobRecord:
    """A job as the store keeps it: what was asked, what is known of the video, how far the
    work is, and who runs it."""

    id: str
    state: JobState
    created_at: float
    updated_at: float
    filename: str
    options: JobOptions
    video: VideoProbe
    frames_total: int
    #: Resolved engine name and decode options.
    engine: str = ""
    decoding: DecodeOptions = field(default_factory=DecodeOptions)
    frames_done: int = 0
    chunks_done: int = 0
    stage: str = "queued"
    #: Where the next chunk starts (None before the first commit).
    cursor: DecodeCursor | None = None
    #: Whether the chunk holding the video's last frame is committed.
    decoded_all: bool = False
    #: The error the job ended with, as its JSON body (``errors.from_dict`` gives the type).
    error: dict[str, Any] | None = None
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = None
    owner: str | None = None
    lease_until: float = 0.0
    cancel_requested: bool = False
    retries: int = 0
    #: Attempts dispatched for the next chunk, counted before each one starts, so that a
    #: runner taking over a job also counts attempts its dead predecessor made.
    chunk_attempts: int = 0
    results: dict[str, int] = field(default_factory=dict)  # format -> bytes


_DEFAULTS = {f.name: f.default for f in fields(JobRecord) if isinstance(f.default, (int, float, str, bool))}
_COLUMNS = [f.name for f in fields(JobRecord)]
# Columns that hold JSON, with how their typed values are written and read back.
_JSON_FIELDS: Mapping[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "options": (lambda v: v.model_dump(mode="json"), JobOptions.model_validate),
    "video": (lambda v: v.to_dict(), VideoProbe.from_dict),
    "decoding": (asdict, lambda d: DecodeOptions(**d)),
    "cursor": (lambda v: v.to_dict(), DecodeCursor.from_dict),
    "error": (dict, dict),
    "results": (dict, dict),
}


class SqlConnection(Protocol):
    """What the record queries need of a database connection (sqlite3's, or an adapter)."""

    row_factory: Any

    def execute(self, sql: str, parameters: Any = (), /) -> Any: ...


class JobStore(ABC):
    """Job records and files. All methods are safe to call from several processes.

    Every path a store hands out is under its ``root``, a folder every replica on every node
    mounts at the same place, so that any replica can use a path another one was given; no
    path is of a folder only one process or node can see. ``PostgresJobStore``, whose records
    several nodes share, refuses a ``root`` that is not the volume its jobs' files are on."""

    @abstractmethod
    def new_upload_path(self) -> Path: """A fresh path under the spool folder to receive an upload."""

    @abstractmethod
    def parts_dir(self) -> Path: """The folder of uploads in parts (``parts.PartUploads``)."""

    @abstractmethod
    def create(self, record: JobRecord, upload: Path) -> JobRecord: """Store a job and move its upload in."""

    @abstractmethod
    def get(self, job_id: str) -> JobRecord: """The job, or ``JobNotFound``."""

    @abstractmethod
    def update(self, job_id: str, **changes: Any) -> JobRecord: ...

    @abstractmethod
    def upload_path(self, job_id: str) -> Path: ...

    @abstractmethod
    def commit_chunk(self, job_id: str, chunk_index: int, output: bytes, state: bytes,
                     cursor: DecodeCursor, frames: int, is_last: bool) -> JobRecord: ...

    @abstractmethod
    def load_state(self, job_id: str, chunk_index: int) -> bytes | None:
        """Tracker state before ``chunk_index`` (None for chunk 0)."""

    @abstractmethod
    def chunk_outputs(self, job_id: str) -> Iterator[bytes]: ...

    @abstractmethod
    def result_dir(self, job_id: str) -> Path: ...

    @abstractmethod
    def result_path(self, job_id: str, fmt: str) -> Path: ...

    @abstractmethod
    def claim(self, job_id: str, owner: str, lease_s: float, *, steal: bool = False) -> bool:
        """Take or renew the job's lease; with ``steal``, only if the lease has expired."""

    @abstractmethod
    def recent(self, limit: int = 100, *, states: Collection[JobState] = (),
               before: tuple[float, str] | None = None) -> list[JobRecord]:
        """The newest jobs, newest first (by ``created_at``, then id): only those in ``states``
        (all when empty), and only those after ``before`` = (created_at, id) of the last job of
        the previous page in that order."""

    @abstractmethod
    def orphans(self, now: float) -> list[str]: """Unfinished jobs whose lease has expired."""

    @abstractmethod
    def discard_work_files(self, job_id: str, keep_results: bool = True) -> None:
        """Remove what a job no longer needs once it has ended. ``keep_results``: keep what a
        succeeded job serves until it expires (its results, the viewer's files and the upload);
        else remove all of its files."""

    @abstractmethod
    def delete(self, job_id: str) -> None: """Remove the job's record and files."""

    @abstractmethod
    def expire(self, now: float) -> list[str]: """Delete jobs past ``expires_at``; their ids."""

    @abstractmethod
    def usage_bytes(self) -> int: ...

    @abstractmethod
    def clean_spool(self, older_than_s: float) -> int:
        """Remove uploads abandoned by a process that died while receiving them; how many."""


class LocalJobStore(JobStore):
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser()
        self.spool = self.root / "spool"
        self.jobs = self.root / "jobs"
        self.spool.mkdir(parents=True, exist_ok=True)
        self.jobs.mkdir(parents=True, exist_ok=True)
        self._db = self.root / "jobs.sqlite"
        self._init_records()

    def _init_records(self) -> None:
        """Create (or bring up to date) the table of job records."""
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"CREATE TABLE IF NOT EXISTS jobs ({', '.join(_COLUMNS)}, PRIMARY KEY (id))")
            # A store made by an older version lacks the newer fields: add them (NULL -> default).
            present = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
            for column in _COLUMNS:
                if column not in present:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {column}")
            db.execute("CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state)")
            db.execute("CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at, id)")  # the job list

    @contextmanager
    def _connect(self) -> Iterator[SqlConnection]:
        """A connection for one operation. Every query of this class is portable SQL with
        ``?`` placeholders, so that a server-backed store (store_postgres.py) only replaces
        this and ``_init_records``."""
        db = sqlite3.connect(self._db, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            yield db
        finally:
            db.close()

    # --- records ---------------------------------------------------------------------------

    def new_upload_path(self) -> Path:
        return self.spool / f"{uuid.uuid4().hex}.part"

    def parts_dir(self) -> Path:
        return self.root / "uploads"

    def create(self, record: JobRecord, upload: Path) -> JobRecord:
        directory = self.jobs / record.id
        (directory / "chunks").mkdir(parents=True)
        os.replace(upload, directory / "upload")
        row = _to_row(record)
        with self._connect() as db:
            db.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       list(row.values()))
        return record

    def get(self, job_id: str) -> JobRecord:
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job with id {job_id!r} (it may have expired)", job_id=job_id)
        return _from_row(dict(row))

    def update(self, job_id: str, **changes: Any) -> JobRecord:
        """Set fields of the record (``JobRecord`` names, typed values)."""
        changes["updated_at"] = time.time()
        row = _to_row(changes)
        with self._connect() as db:
            cursor = db.execute(f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in row)} WHERE id = ?",
                                [*row.values(), job_id])
        if cursor.rowcount == 0:
            raise JobNotFound(f"no job with id {job_id!r}", job_id=job_id)
        return self.get(job_id)

    def claim(self, job_id: str, owner: str, lease_s: float, *, steal: bool = False) -> bool:
        now = time.time()
        condition = "lease_until < ?" if steal else "(owner = ? OR owner IS NULL OR lease_until < ?)"
        params = [now] if steal else [owner, now]
        with self._connect() as db:
            cursor = db.execute(
                f"UPDATE jobs SET owner = ?, lease_until = ? WHERE id = ? AND state IN ('queued', 'running') "
                f"AND {condition}", [owner, now + lease_s, job_id, *params])
        return cursor.rowcount == 1

    def recent(self, limit: int = 100, *, states: Collection[JobState] = (),
               before: tuple[float, str] | None = None) -> list[JobRecord]:
        where: list[str] = []
        params: list[Any] = []
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            params.extend(JobState(state).value for state in states)
        if before is not None:  # keyset pagination: stable while jobs are added or removed
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params.extend([before[0], before[0], before[1]])
        condition = f"WHERE {' AND '.join(where)} " if where else ""
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(f"SELECT * FROM jobs {condition}ORDER BY created_at DESC, id DESC LIMIT ?",
                              [*params, limit]).fetchall()
        return [_from_row(dict(row)) for row in rows]

    def orphans(self, now: float) -> list[str]:
        with self._connect() as db:
            rows = db.execute("SELECT id FROM jobs WHERE state IN ('queued', 'running') AND lease_until < ? "
                              "ORDER BY created_at", (now,)).fetchall()
        return [r[0] for r in rows]

    # --- files -----------------------------------------------------------------------------

    def _dir(self, job_id: str) -> Path:
        if not job_id.isalnum():  # ids are hex; refuse anything that could leave the folder
            raise JobNotFound(f"no job with id {job_id!r}", job_id=job_id)
        return self.jobs / job_id

    def upload_path(self, job_id: str) -> Path:
        return self._dir(job_id) / "upload"

    def commit_chunk(self, job_id: str, chunk_index: int, output: bytes, state: bytes,
                     cursor: DecodeCursor, frames: int, is_last: bool) -> JobRecord:
        directory = self._dir(job_id)
        _write_atomic(directory / "chunks" / f"{chunk_index:06d}", output)
        _write_atomic(directory / f"state-{chunk_index + 1:06d}", state)
        with self._connect() as db:
            db.execute(
                "UPDATE jobs SET chunks_done = ?, frames_done = frames_done + ?, cursor = ?, decoded_all = ?, "
                "chunk_attempts = 0, updated_at = ? WHERE id = ? AND chunks_done = ?",
                [chunk_index + 1, frames, json.dumps(cursor.to_dict()), is_last, time.time(), job_id, chunk_index])
        # Keep the newest checkpoint and the one before this chunk: a retry of this chunk
        # (its commit done, but the reply lost) starts again from the latter.
        for old in directory.glob("state-*"):
            if old.name < f"state-{chunk_index:06d}":
                old.unlink(missing_ok=True)
        return self.get(job_id)

    def load_state(self, job_id: str, chunk_index: int) -> bytes | None:
        if chunk_index == 0:
            return None
        path = self._dir(job_id) / f"state-{chunk_index:06d}"
        return path.read_bytes()

    def chunk_outputs(self, job_id: str) -> Iterator[bytes]:
        for path in sorted((self._dir(job_id) / "chunks").iterdir()):
            if not path.name.endswith(".tmp"):
                yield path.read_bytes()

    def result_dir(self, job_id: str) -> Path:
        return self._dir(job_id)

    def result_path(self, job_id: str, fmt: str) -> Path:
        return self._dir(job_id) / f"result.{fmt}"

    def discard_work_files(self, job_id: str, keep_results: bool = True) -> None:
        directory = self._dir(job_id)
        if not keep_results:
            shutil.rmtree(directory, ignore_errors=True)
            return
        shutil.rmtree(directory / "chunks", ignore_errors=True)
        for spill in directory.glob(".npz-spill-*"):  # left by a process that died writing the NPZ
            shutil.rmtree(spill, ignore_errors=True)
        # The upload stays: the viewer plays it until the job expires or is deleted.
        for path in [*directory.glob("state-*"), *directory.glob("*.partial")]:
            path.unlink(missing_ok=True)

    def delete(self, job_id: str) -> None:
        shutil.rmtree(self._dir(job_id), ignore_errors=True)
        with self._connect() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def expire(self, now: float) -> list[str]:
        with self._connect() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM jobs WHERE expires_at IS NOT NULL AND expires_at < ?",
                                            (now,)).fetchall()]
            for job_id in ids:
                shutil.rmtree(self.jobs / job_id, ignore_errors=True)
                db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return ids

    def clean_spool(self, older_than_s: float) -> int:
        """Remove uploads abandoned by a process that died while receiving them."""
        cutoff, removed = time.time() - older_than_s, 0
        for path in self.spool.iterdir():
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def usage_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())


def new_job_id() -> str:
    return uuid.uuid4().hex


def _write_atomic(path: Path, data: bytes) -> None:
    # A name of its own: two replicas may commit the same retried chunk at once.
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _to_row(values: Mapping[str, Any] | JobRecord) -> dict[str, Any]:
    if isinstance(values, JobRecord):
        values = {f: getattr(values, f) for f in _COLUMNS}
    row = {}
    for key, value in values.items():
        if key not in _COLUMNS:
            raise KeyError(key)
        if key in _JSON_FIELDS and value is not None:
            value = json.dumps(_JSON_FIELDS[key][0](value))
        elif isinstance(value, JobState):
            value = value.value
        row[key] = value
    return row


def _from_row(row: dict[str, Any]) -> JobRecord:
    row = {k: v for k, v in row.items() if v is not None or k not in _DEFAULTS}
    row = {**_DEFAULTS, **row}
    # A store made by an older version may lack the decoding and results of old jobs.
    row["decoding"] = row.get("decoding") or "{}"
    row["results"] = row.get("results") or "{}"
    for key, (_, read) in _JSON_FIELDS.items():
        if row[key] is not None:
            row[key] = read(json.loads(row[key]))
    row["state"] = JobState(row["state"])
    row["cancel_requested"] = bool(row["cancel_requested"])
    row["decoded_all"] = bool(row["decoded_all"])
    return JobRecord(**row)


def open_store(settings: StoreSettings) -> JobStore:
    """The store that ``settings`` describe: records in PostgreSQL when ``store.database`` is
    set (several ingress replicas), else in SQLite beside the files; files under ``root``."""
    if settings.database:
        from .store_postgres import PostgresJobStore  # psycopg: the optional extra 'postgres'

        return PostgresJobStore(settings.root, settings.database)
    return LocalJobStore(settings.root)
