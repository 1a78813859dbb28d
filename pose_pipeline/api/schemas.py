"""The bodies of the HTTP API as pydantic models: what the server sends, what the client
(``pose_pipeline.client``) reads back, and what the OpenAPI schema at ``/openapi.json``
shows. docs/api.md describes each field.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ..options import JobOptions
from ..jobs.state import JobStage, JobState
from ..video.types import VideoProbe

if TYPE_CHECKING:  # the server's types; a client reads these views without them (no PyAV, numpy)
    from ..jobs.store import JobRecord
    from .parts import PartialUpload


class _View(BaseModel):
    # A newer server may send fields this client does not know: keep reading.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    def to_json(self) -> dict[str, Any]:
        """The body as JSON values, with the API's field names."""
        return self.model_dump(mode="json", by_alias=True)


class ErrorBody(BaseModel):
    """``{"error": ...}`` of every error response, and a job's ``error``: ``code`` and
    ``message``, then the details of the code (``errors.from_dict`` gives the type)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    code: str
    message: str


class Progress(_View):
    frames_done: int
    #: Expected frames (exact for constant-frame-rate video), never below ``frames_done``.
    frames_total: int
    fraction: float
    chunks_done: int


class Timings(_View):
    queued_s: float
    running_s: float


class ResultLink(_View):
    url: str
    bytes: int


class JobUrls(_View):
    self_: str = Field(alias="self")
    events: str
    result: str
    #: The job's page in a browser (no build step, no CDN): the video with the result drawn on it.
    viewer: str
    #: What the viewer reads: frames of the result by range, the track timeline, the upload.
    frames: str
    tracks: str
    video: str
    media_token: str


class ProcessingView(_View):
    """How the video is processed (the result header's ``processing``): ``fps`` null is every
    frame; the frames the engine sees, and the overlay MP4, are ``frame_width x frame_height``."""

    fps: float | None
    max_side: int | None
    frame_width: int
    frame_height: int
    start_s: float | None
    end_s: float | None


class JobView(_View):
    """A job's status: ``GET /v1/jobs/{id}``, each event of ``/events``, and the answer of
    ``POST /v1/jobs`` and ``DELETE /v1/jobs/{id}``."""

    job_id: str
    state: JobState
    stage: JobStage
    progress: Progress
    filename: str
    video: VideoProbe
    options: JobOptions
    processing: ProcessingView
    engine: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    expires_at: float | None
    timings: Timings
    retries: int
    error: ErrorBody | None
    results: dict[str, ResultLink]
    urls: JobUrls

    @classmethod
    def of(cls, record: JobRecord, base_url: str, now: float | None = None) -> JobView:
        """The view of ``record`` with absolute URLs under ``base_url`` (the service's root)."""
        from ..pipeline import processing_of

        base = f"{base_url.rstrip('/')}/v1/jobs/{record.id}"
        ended = record.finished_at or (time.time() if now is None else now)
        total = record.frames_total
        return cls(
            job_id=record.id,
            state=record.state,
            stage=record.stage,
            progress=Progress(frames_done=record.frames_done, frames_total=max(total, record.frames_done),
                              fraction=round(min(1.0, record.frames_done / total), 4) if total else 0.0,
                              chunks_done=record.chunks_done),
            filename=record.filename,
            video=record.video,
            options=record.options,
            processing=ProcessingView.model_validate(processing_of(record.video, record.decoding).to_dict()),
            engine=record.engine,
            created_at=record.created_at,
            started_at=record.started_at,
            finished_at=record.finished_at,
            expires_at=record.expires_at,
            timings=Timings(queued_s=round((record.started_at or ended) - record.created_at, 3),
                            running_s=round(ended - record.started_at, 3) if record.started_at else 0.0),
            retries=record.retries,
            error=None if record.error is None else ErrorBody.model_validate(record.error.to_dict()),
            results={fmt: ResultLink(url=f"{base}/result?format={fmt}", bytes=size)
                     for fmt, size in record.results.items()},
            urls=JobUrls(self_=base, events=f"{base}/events", result=f"{base}/result", viewer=f"{base}/viewer",
                         frames=f"{base}/frames", tracks=f"{base}/tracks", video=f"{base}/video",
                         media_token=f"{base}/media-token"),
        )


class UploadView(_View):
    """An upload in parts: ``POST /v1/uploads``, ``PUT`` and ``GET /v1/uploads/{id}``."""

    id: str
    filename: str
    #: Announced by the client when it created the upload, if it did.
    size: int | None
    #: Bytes received so far: where the next part starts.
    offset: int
    created_at: float
    updated_at: float
    max_part_bytes: int
    expires_at: float
    url: str

    @classmethod
    def of(cls, upload: PartialUpload, base_url: str, max_part_bytes: int, idle_s: float) -> UploadView:
        return cls(**upload.to_dict(), max_part_bytes=max_part_bytes, expires_at=upload.updated_at + idle_s,
                   url=f"{base_url.rstrip('/')}/v1/uploads/{upload.id}")


class UploadDeleted(_View):
    upload_id: str
    deleted: bool


class StageReadiness(_View):
    """One deployment in ``/readyz``: ready, with the engine's description for Tracking; or
    not, with its error's fields (``code``, ``message`` and the details: ``engine`` is then the
    engine's name) or only a ``message``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    ready: bool
    engine: dict[str, Any] | str | None = None
    message: str | None = None


class ReadyView(_View):
    status: str
    deployments: dict[str, StageReadiness]


def readiness_json(stages: dict[str, StageReadiness]) -> dict[str, Any]:
    """``deployments`` of ``/readyz``, with only the fields each one has."""
    return {name: stage.model_dump(mode="json", exclude_none=True) for name, stage in stages.items()}


class JobList(_View):
    """``GET /v1/jobs``: a page of jobs, newest first, each as ``GET /v1/jobs/{id}`` gives it;
    ``next_cursor`` (opaque) asks for the next page, null on the last one."""

    jobs: list[JobView]
    next_cursor: str | None


class FramesPage(_View):
    """``GET /v1/jobs/{id}/frames``: frames ``start`` .. ``start + count - 1`` of the result,
    each exactly as in the result JSON's ``frames`` (docs/result-schema.md); ``total``: the
    result's frames."""

    start: int
    count: int
    total: int
    frames: list[dict[str, Any]]


class TrackTimeline(_View):
    track_id: int
    first_frame: int
    last_frame: int
    frames_detected: int
    frames_predicted: int
    #: The runs of consecutive frames in which the track appears, [first, last] each.
    segments: list[tuple[int, int]]


class Timeline(_View):
    """``GET /v1/jobs/{id}/tracks``: one bar per track for the viewer's timeline."""

    total_frames: int
    #: The processed frame rate (the result's frames per second of video).
    fps: float | None
    tracks: list[TrackTimeline]


class MediaTokenView(_View):
    """``POST /v1/jobs/{id}/media-token``: ``GET .../video?media_token=`` accepts it instead of
    the bearer header until ``expires_at`` (Unix seconds)."""

    token: str
    expires_at: float
