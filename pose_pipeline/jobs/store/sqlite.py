"""``LocalJobStore``: job records in SQLite, files in one directory per job.

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
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...errors import JobNotFound
from ...files import write_atomically
from ...video import DecodeCursor
from .base import _COLUMNS, DuplicateKey, JobRecord, JobState, JobStore, SqlConnection, _from_row, _to_row


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
            db.execute("CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs (idempotency_key)")

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
        try:
            with self._connect() as db:
                db.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                           list(row.values()))
        except (sqlite3.IntegrityError, DuplicateKey):  # the idempotency key's index (PostgreSQL: DuplicateKey)
            shutil.rmtree(directory, ignore_errors=True)
            raise DuplicateKey(record.idempotency_key) from None
        return record

    def find_by_key(self, idempotency_key: str) -> JobRecord | None:
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT * FROM jobs WHERE idempotency_key = ?", (idempotency_key,)).fetchone()
        return None if row is None else _from_row(dict(row))

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
        write_atomically(directory / "chunks" / f"{chunk_index:06d}", output)
        write_atomically(directory / f"state-{chunk_index + 1:06d}", state)
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
