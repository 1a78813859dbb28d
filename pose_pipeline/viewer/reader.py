"""What the viewer's endpoints read of a job in the store (``JobService`` calls it; the routes
are in pose_pipeline/api/app.py): frames of the result by range, the track timeline, the uploaded
video, and the media tokens that stand in for the bearer token on the video's URL.

Each answer is bounded by the request, not by the video: the frames come from the result
JSON through its frame index (``data.FrameIndex``, written beside it by the aggregation stage),
the timeline from its own small file, the video as a file response (ranges included).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import JobNotFinished, JobNotFound, Unauthorized
from ..api.media_tokens import MediaTokens
from ..jobs.cache import LruCache
from ..jobs.store import JobRecord, JobState, JobStore
from ..api.schemas import FramesPage, MediaTokenView, Timeline
from .data import FrameIndex, load_index, load_timeline

#: Media types of the containers a browser's <video> element may play. A QuickTime file is
#: sent as MP4: the same ISO media layout, and browsers play H.264 in it only when told MP4.
VIDEO_TYPES = {"mp4": "video/mp4", "mov": "video/mp4", "webm": "video/webm", "mkv": "video/x-matroska"}
#: Frame indexes kept in memory (each 16 bytes per frame: 300 kB for ten minutes at 30 fps).
INDEX_CACHE = 16
_SCOPE = "video"


@dataclass(frozen=True)
class VideoFile:
    """The upload of a job, for the HTTP layer to send."""

    path: Path
    media_type: str
    filename: str


class ViewerReader:
    def __init__(self, store: JobStore, tokens: MediaTokens) -> None:
        self.store = store
        self.tokens = tokens
        self._indexes: LruCache[str, tuple[tuple[int, int], FrameIndex]] = LruCache(INDEX_CACHE)

    # --- result data -----------------------------------------------------------------------

    def frames(self, record: JobRecord, start: int, count: int) -> FramesPage:
        """``start`` >= 0, ``count`` >= 1 (the API checks both); ``count`` is capped at
        ``data.MAX_PAGE_FRAMES`` and at the result's end."""
        result = self._result_json(record)
        return FramesPage.model_validate(self._index(record.id, result).page(start, count))

    def timeline(self, record: JobRecord) -> Timeline:
        result = self._result_json(record)
        return Timeline.model_validate(load_timeline(result.parent, result))

    def _result_json(self, record: JobRecord) -> Path:
        """The job's result JSON (written for every succeeded job, whatever its formats)."""
        record.require_succeeded()
        path = self.store.result_path(record.id, "json")
        if not path.exists():
            raise JobNotFound(f"the files of job {record.id} were deleted (DELETE); its record stays until it "
                              "expires", job_id=record.id)
        return path

    def _index(self, job_id: str, result: Path) -> FrameIndex:
        stat = result.stat()
        key = (stat.st_mtime_ns, stat.st_size)  # a result written again gets a new index
        cached = self._indexes.get(job_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        index = load_index(result.parent, result)
        self._indexes.put(job_id, (key, index))
        return index

    # --- the video -------------------------------------------------------------------------

    def video(self, record: JobRecord) -> VideoFile:
        """The upload, while the job has it: until it expires or is deleted, unless it failed
        or was cancelled (its files went with its work then)."""
        if record.state in (JobState.failed, JobState.cancelled):
            raise JobNotFinished(f"the job ended {record.state.value}; its video was deleted with its other files",
                                 state=record.state.value,
                                 job_error=None if record.error is None else record.error.to_dict())
        path = self.store.upload_path(record.id)
        if not path.exists():
            raise JobNotFound(f"the video of job {record.id} was deleted (DELETE)", job_id=record.id)
        stem = Path(record.filename).stem or record.id
        container = record.video.container
        return VideoFile(path, VIDEO_TYPES.get(container, "application/octet-stream"), f"{stem}.{container}")

    def media_token(self, record: JobRecord) -> MediaTokenView:
        """A token for this job's video, which expires in ``ttl_s`` and never after the job."""
        token = self.tokens.issue(record.id, _SCOPE, not_after=record.expires_at)
        return MediaTokenView(token=token.token, expires_at=token.expires_at)

    def check_media_token(self, token: str, job_id: str) -> None:
        if not self.tokens.verify(token, job_id, _SCOPE):
            raise Unauthorized("the media token is not valid for this job's video, or it has expired: ask "
                               "POST /v1/jobs/{id}/media-token for a new one")
