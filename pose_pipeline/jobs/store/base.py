"""Job records and the store's interface: ``JobState``, ``JobRecord``, ``JobStore``, and the
record's columns as the SQL stores keep them."""


from __future__ import annotations

import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from ...errors import JobError, JobNotFinished
from ...options import JobOptions
from ...video.types import DecodeCursor, DecodeOptions, VideoProbe
from ..state import JobStage, JobState


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
    stage: JobStage = JobStage.queued
    #: Where the next chunk starts (None before the first commit).
    cursor: DecodeCursor | None = None
    #: Whether the chunk holding the video's last frame is committed.
    decoded_all: bool = False
    #: The error the job ended with (``JobError.error()`` gives its type).
    error: JobError | None = None
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
    #: The client's ``Idempotency-Key`` (unique among the records), and a digest of what it
    #: asked for: the same key with the same request gives this job again.
    idempotency_key: str | None = None
    request_digest: str | None = None

    def require_succeeded(self) -> None:
        """``JobNotFinished`` unless the job succeeded: its result is read only then."""
        if self.state is JobState.succeeded:
            return
        if self.state.terminal:
            raise JobNotFinished(f"the job ended {self.state.value}; it has no result",
                                 state=self.state.value, job_error=None if self.error is None else self.error.to_dict())
        raise JobNotFinished(f"the job is {self.state.value}; its result is there once it has succeeded (poll "
                             "it or follow its events)", state=self.state.value)


_DEFAULTS = {f.name: f.default for f in fields(JobRecord) if isinstance(f.default, (int, float, str, bool))}
_COLUMNS = [f.name for f in fields(JobRecord)]
# Columns that hold JSON, with how their typed values are written and read back.
_JSON_FIELDS: Mapping[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "options": (lambda v: v.model_dump(mode="json"), JobOptions.model_validate),
    "video": (lambda v: v.to_dict(), VideoProbe.from_dict),
    "decoding": (asdict, lambda d: DecodeOptions(**d)),
    "cursor": (lambda v: v.to_dict(), DecodeCursor.from_dict),
    "error": (JobError.to_dict, JobError.from_dict),
    "results": (dict, dict),
}


class DuplicateKey(Exception):
    """A record with this idempotency key is already stored."""


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
    def find_by_key(self, idempotency_key: str) -> JobRecord | None:
        """The job created with this ``Idempotency-Key``, if any."""

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


def new_job_id() -> str:
    return uuid.uuid4().hex


def _to_row(values: Mapping[str, Any] | JobRecord) -> dict[str, Any]:
    if isinstance(values, JobRecord):
        values = {f: getattr(values, f) for f in _COLUMNS}
    row = {}
    for key, value in values.items():
        if key not in _COLUMNS:
            raise KeyError(key)
        if key in _JSON_FIELDS and value is not None:
            value = json.dumps(_JSON_FIELDS[key][0](value))
        elif key == "state":
            value = JobState(value).value
        elif key == "stage":  # typed: a stage this version does not know is refused here
            value = JobStage(value).value
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
    row["stage"] = JobStage(row["stage"])
    row["cancel_requested"] = bool(row["cancel_requested"])
    row["decoded_all"] = bool(row["decoded_all"])
    return JobRecord(**row)


