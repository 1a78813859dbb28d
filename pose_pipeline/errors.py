"""Every failure the service can report, as a type with a stable code and an HTTP status.

The table of codes lives here and nowhere else: the HTTP layer turns any
``PipelineError`` into ``{"error": {"code", "message", ...details}}`` with
``error.status``; the CLI prints ``error.code: error.message`` and exits non-zero.
"""

from __future__ import annotations

from typing import Any, ClassVar


class PipelineError(Exception):
    """Base of all expected failures. Subclasses set ``code`` and ``status``."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    #: Whether running the same chunk again (on a fresh replica) can succeed.
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __reduce__(self):  # keeps ``details`` when Ray pickles the error across processes
        return (_rebuild, (type(self), self.message, self.details))

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def _rebuild(cls: type[PipelineError], message: str, details: dict[str, Any]) -> PipelineError:
    return cls(message, **details)


# --- Bad input (4xx) -------------------------------------------------------------------------


class InvalidRequest(PipelineError):
    code, status = "invalid_request", 400


class EmptyUpload(PipelineError):
    code, status = "empty_file", 400


class UnsupportedMediaType(PipelineError):
    """The request's content type is not one the endpoint accepts."""

    code, status = "unsupported_media_type", 415


class InvalidOption(PipelineError):
    code, status = "invalid_option", 422


class NotAMediaFile(PipelineError):
    code, status = "not_a_media_file", 415


class NoVideoStream(PipelineError):
    code, status = "no_video_stream", 422


class UnsupportedCodec(PipelineError):
    code, status = "unsupported_codec", 415


class CorruptVideo(PipelineError):
    """Damaged or truncated data. Carries ``frame`` and ``time_s`` of the first bad spot."""

    code, status = "corrupt_video", 422


class ResolutionTooLarge(PipelineError):
    code, status = "resolution_too_large", 422


class DurationTooLong(PipelineError):
    code, status = "duration_too_long", 422


class FileTooLarge(PipelineError):
    code, status = "file_too_large", 413


class PartTooLarge(PipelineError):
    """One part of an upload in parts is larger than ``limits.max_part_bytes``."""

    code, status = "part_too_large", 413


class UploadNotFound(PipelineError):
    code, status = "upload_not_found", 404


class UploadConflict(PipelineError):
    """A part that does not start where the upload ends, a part sent while another is being
    received, or a job started from an incomplete upload. ``offset``: where to go on."""

    code, status = "upload_conflict", 409


class Unauthorized(PipelineError):
    code, status = "unauthorized", 401


class JobNotFound(PipelineError):
    code, status = "job_not_found", 404


class JobNotFinished(PipelineError):
    code, status = "job_not_finished", 409


class JobCancelled(PipelineError):
    code, status = "cancelled", 409


# --- Service-side failures (5xx) -------------------------------------------------------------


class Overloaded(PipelineError):
    """Too much work queued; the client should retry after ``retry_after_s``. Inside a job
    (a stage's queue full) the chunk is retried after a pause."""

    code, status, retryable = "overloaded", 503, True


class WorkerDied(PipelineError):
    code, status, retryable = "worker_died", 503, True


class HostOutOfMemory(PipelineError):
    code, status, retryable = "out_of_memory", 503, True


class GpuOutOfMemory(PipelineError):
    code, status = "gpu_out_of_memory", 503


class ChunkTimeout(PipelineError):
    code, status, retryable = "timeout", 504, True


class EngineUnavailable(PipelineError):
    """The engine cannot load: missing package, weights file or device."""

    code, status = "engine_unavailable", 503


class FetchFailed(PipelineError):
    """Files the project takes from a pinned wheel (models, demo clips) could not be fetched."""

    code, status = "fetch_failed", 503


class NotReady(PipelineError):
    code, status = "not_ready", 503


class InternalError(PipelineError):
    code, status = "internal_error", 500


ALL_ERRORS: tuple[type[PipelineError], ...] = tuple(
    cls for cls in list(globals().values()) if isinstance(cls, type) and issubclass(cls, PipelineError)
)
