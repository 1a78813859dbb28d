"""The job service: what the HTTP API does, as a typed library that knows nothing of HTTP
frameworks or Ray.

``JobService`` receives uploads, creates jobs (options checked, the video probed by the
stages), views, lists, cancels and deletes them, hands out results, runs uploads in parts
and answers readiness. ``api.create_app`` puts HTTP in front of it; the Serve ingress
(``deployments/ingress.py``) builds it with stages that call the other deployments, the
tests with ``stages.LocalStages``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from ..config import Settings
from ..errors import (FileTooLarge, IdempotencyKeyReused, InvalidOption, InvalidRequest, NotReady, PipelineError,
                      Unauthorized, UnsupportedCodec)
from ..engines.registry import provides_smpl
from ..jobs.runner import DeathCause, JobObserver, JobRunner, Stages
from .listing import JobQuery, encode_cursor
from .media_tokens import MediaTokens
from ..options import JobOptions
from .parts import PartialUpload, PartUploads, part_too_large
from ..pipeline import decode_options, expected_frames
from ..results.writers import result_media
from ..jobs.store import JobRecord, JobState, new_job_id, open_store
from ..jobs.store.base import DuplicateKey
from ..files import compact_json
from .uploads import Upload, check_content, receive, too_large
from ..video import VideoProbe, unsupported_codec
from ..viewer.reader import VideoFile, ViewerReader
from .schemas import (FramesPage, JobList, JobView, MediaTokenView, ReadyView, StageReadiness, Timeline, UploadView,
                      readiness_json)

#: Seconds ``/readyz`` waits for each stage.
READY_TIMEOUT_S = 5.0
#: Seconds between reads of a job while its events are followed; a keep-alive after this long
#: without an event.
EVENTS_POLL_S = 0.5
EVENTS_KEEPALIVE_S = 15.0


@dataclass(frozen=True)
class StatusEvent:
    """One event of a job's stream: its id (the record's update time, which only grows) and
    the job's status then."""

    id: str
    view: JobView


def _event_time(last_event_id: str | None) -> float | None:
    """The update time a ``Last-Event-ID`` names; None for none or one this service never sent."""
    try:
        value = float(last_event_id) if last_event_id else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None
#: Spool files older than this are uploads a dead process was receiving.
SPOOL_MAX_AGE_S = 3600.0


class ServiceStages(Stages, Protocol):
    """The stages a service runs jobs with (``jobs.Stages``), plus what the service asks of
    them before a job exists."""

    async def probe(self, path: Path) -> VideoProbe:
        """Probe an upload (checked against the limits): in the service, on a Decode replica,
        so that a file that crashes FFmpeg takes down that replica, not the ingress."""

    def readiness_checks(self) -> Mapping[str, Awaitable[Any]]:
        """One awaitable per stage, by name: it answers when the stage is ready (Tracking with
        its engine's description) and raises its error when it is not."""


@dataclass(frozen=True)
class ResultFile:
    """A job's result file, for the HTTP layer to send."""

    path: Path
    media_type: str
    filename: str
    job_id: str


#: Longest file name a job keeps (a file system's usual limit).
MAX_FILENAME_CHARS = 255


def client_filename(*candidates: str) -> str:
    """The first non-empty of ``candidates`` as a job's file name: only its base name (a
    client's directories say nothing, and must never become paths here), without control
    characters (NUL cannot be stored in PostgreSQL text), at most ``MAX_FILENAME_CHARS``."""
    for candidate in candidates:
        name = "".join(c for c in os.path.basename(candidate or "") if c.isprintable())
        if name.strip():
            return name[:MAX_FILENAME_CHARS]
    return ""


class JobService:
    """The API's operations on one store, with one runner (``jobs.JobRunner``).

    ``owner`` names this service's runner in the store's leases; ``death_cause`` is asked
    why another runner died when one of its jobs is adopted (see ``JobRunner``); ``log``
    takes the service's own lines (in Serve: the replica's log)."""

    def __init__(self, settings: Settings, stages: ServiceStages, owner: str, *,
                 observer: JobObserver | None = None, death_cause: DeathCause | None = None,
                 log: logging.Logger | None = None) -> None:
        self.settings = settings
        self.log = log or logging.getLogger("pose_pipeline.api.service")
        self.store = open_store(settings.store)
        self.parts = PartUploads(self.store.parts_dir())
        self.stages = stages
        self.runner = JobRunner(self.store, stages, settings.jobs, owner, observer, death_cause)
        self.observer = self.runner.observer
        self.viewer = ViewerReader(self.store, MediaTokens.from_bearer_tokens(
            settings.auth.tokens, ttl_s=settings.auth.media_token_ttl_s))
        self._housekeeping: asyncio.Task[None] | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the runner and the housekeeping (call inside the event loop)."""
        self.store.clean_spool(older_than_s=SPOOL_MAX_AGE_S)
        self.runner.start()
        self._housekeeping = asyncio.create_task(self._keep_house())

    async def stop(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        await self.runner.stop()

    async def _keep_house(self, period_s: float = 60.0) -> None:
        """Remove idle uploads in parts; tell the observer the store may have changed (jobs
        expire and are deleted meanwhile)."""
        while True:
            for upload_id in self.parts.expire(self.settings.limits.upload_idle_s):
                self.log.info("upload %s removed: idle", upload_id, extra={"upload_id": upload_id})
            self.observer.store_changed()
            await asyncio.sleep(period_s)

    # --- requests --------------------------------------------------------------------------

    def authorize(self, token: str | None) -> None:
        """Check a request's bearer token (None: it sent none) against ``auth.tokens`` (none
        configured: anyone)."""
        tokens = self.settings.auth.tokens
        if not tokens:
            return
        # As bytes: compare_digest refuses str with non-ASCII characters, which a header may hold.
        given = (token or "").encode("utf-8", "surrogateescape")
        if token is None or not any(hmac.compare_digest(given, t.encode()) for t in tokens):
            raise Unauthorized("missing or invalid bearer token (Authorization: Bearer <token>)")

    def admit(self) -> None:
        """Raise ``Overloaded`` if a new job would pass the queue bound: before a body is read."""
        self.runner.admit()

    async def receive(self, body: AsyncIterator[bytes], content_type: str, content_length: int | None) -> Upload:
        """Write a request body (raw or multipart) to the spool, within the limit for one
        request."""
        limits = self.settings.limits
        limit = min(limits.max_upload_bytes, limits.max_body_bytes)
        if (content_length or 0) > limit:
            raise self._too_large_for_one_request(limit)
        try:
            upload = await receive(body, content_type, self.store.new_upload_path(), limit)
        except FileTooLarge:
            raise self._too_large_for_one_request(limit) from None
        self.observer.upload_received(upload.size)
        return upload

    def _too_large_for_one_request(self, limit: int) -> FileTooLarge:
        if limit == self.settings.limits.max_upload_bytes:
            return too_large(limit)
        return FileTooLarge(f"a file sent in one request may hold at most {limit} bytes (limits.max_body_bytes): "
                            "send larger files in parts (POST /v1/uploads; pose-pipeline submit does)",
                            limit_bytes=limit)

    async def take_parts(self, upload_id: str, body: AsyncIterator[bytes]) -> Upload:
        """The finished upload in parts ``upload_id`` as a job's upload (the request itself
        must have no body)."""
        async for piece in body:
            if piece:
                raise InvalidRequest("send either a body or ?upload=<id> of an upload in parts, not both")
        path = self.store.new_upload_path()
        taken = self.parts.take(upload_id, path)
        upload = Upload(path, taken.offset, taken.filename)
        try:
            check_content(upload)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return upload

    # --- jobs ------------------------------------------------------------------------------

    async def create(self, upload: Upload, options: Mapping[str, str], *, filename: str = "",
                     result_format: str | None = None, idempotency_key: str | None = None,
                     digest: str | None = None) -> JobRecord:
        """Validate ``options`` (with the upload's own form fields under them) and the video,
        store the job and start it. ``result_format``: a format the job must produce. The
        upload's file is the job's from here on, or removed if no job is made.

        ``idempotency_key`` (the request's ``Idempotency-Key``): a key already used with the
        same request (options, name and video) gives that job again, with another request
        ``idempotency_key_reused``; keys live as long as their job's record. ``digest``: what
        the request is, when not its video's bytes (``parts_digest`` for an upload in parts)."""
        # Only base names: a client's directories say nothing, and must never become paths here.
        # The name, as options are: the query's over a form field, over the file part's own.
        upload.filename = client_filename(filename, upload.fields.pop("filename", ""), upload.filename)
        values = {**upload.fields, **options}
        try:
            if idempotency_key is not None:
                digest = digest or request_digest(values, upload.filename, upload.path)
                earlier = self.replayed(idempotency_key, digest)
                if earlier is not None:
                    upload.path.unlink(missing_ok=True)
                    return earlier
            record = await self._new_record(upload, values, result_format)
            record = replace(record, idempotency_key=idempotency_key, request_digest=digest)
            self.store.create(record, upload.path)
        except DuplicateKey:  # the same key at the same moment: the other request made the job
            upload.path.unlink(missing_ok=True)
            return _same_request(self.store.find_by_key(idempotency_key or ""), digest)
        except BaseException:
            upload.path.unlink(missing_ok=True)
            raise
        self.observer.state_changed(record, upload_name=record.filename, upload_bytes=upload.size)
        self.runner.submit(record)
        return record

    async def _new_record(self, upload: Upload, values: Mapping[str, str], result_format: str | None) -> JobRecord:
        options = JobOptions.parse(values)
        if result_format is not None and result_format not in options.formats:
            raise InvalidOption(f"format {result_format!r} is not among the requested formats "
                                f"{', '.join(options.formats)}", option="format")
        deployed = self.settings.engine.name
        engine = options.engine or deployed
        if engine != deployed:
            raise InvalidOption(f"engine {engine!r} is not deployed here; this service runs {deployed!r}",
                                option="engine")
        options.require_smpl(engine, provides_smpl(deployed, self.settings.engine.options))
        decoding = decode_options(self.settings, options)
        try:
            video = await self.stages.probe(upload.path)
        except UnsupportedCodec as exc:  # the probe saw a spool file: name the client's in the command
            raise unsupported_codec(exc.codec or "unknown", upload.filename or "upload",
                                    self.settings.limits.allowed_codecs) from None
        decoding.check_range(video)  # a start past the end: 422 now, not a failed job later
        now = time.time()
        return JobRecord(id=new_job_id(), state=JobState.queued, created_at=now, updated_at=now,
                         filename=upload.filename or "upload", options=options, video=video,
                         frames_total=expected_frames(video, decoding), engine=engine, decoding=decoding)

    def replayed(self, idempotency_key: str, digest: str) -> JobRecord | None:
        """The job an earlier request with this ``Idempotency-Key`` made, if that request was
        this one (else ``idempotency_key_reused``); None for a key not seen."""
        existing = self.store.find_by_key(checked_key(idempotency_key))
        return None if existing is None else _same_request(existing, digest)

    def get(self, job_id: str) -> JobRecord:
        return self.store.get(job_id)

    def view(self, record: JobRecord, base_url: str) -> JobView:
        return JobView.of(record, base_url)

    def list(self, limit: int = 100) -> list[JobRecord]:
        """The newest jobs, newest first."""
        return self.store.recent(limit)

    def list_page(self, query: JobQuery, base_url: str) -> JobList:
        """A page of ``GET /v1/jobs``: the jobs of ``query``, newest first, and the cursor of
        the next page (one job more is read to know whether there is one)."""
        records = self.store.recent(query.limit + 1, states=query.states, before=query.after)
        more = len(records) > query.limit
        records = records[:query.limit]
        return JobList(jobs=[JobView.of(record, base_url) for record in records],
                       next_cursor=encode_cursor(records[-1]) if more else None)

    # --- what the viewer reads -------------------------------------------------------------

    async def frames(self, job_id: str, start: int, count: int) -> FramesPage:
        """Frames ``start`` .. ``start + count - 1`` of a succeeded job's result (``count``
        capped at ``viewer.data.MAX_PAGE_FRAMES``)."""
        record = self.store.get(job_id)
        return await asyncio.to_thread(self.viewer.frames, record, start, count)

    async def timeline(self, job_id: str) -> Timeline:
        record = self.store.get(job_id)
        return await asyncio.to_thread(self.viewer.timeline, record)

    def media_token(self, job_id: str) -> MediaTokenView:
        return self.viewer.media_token(self.store.get(job_id))

    def video(self, job_id: str, token: str | None, media_token: str | None) -> VideoFile:
        """The job's upload for a request that has the bearer token, or instead (a browser's
        <video> element cannot send headers) a media token of this job. Without auth, anyone."""
        if media_token is not None and self.settings.auth.tokens:
            self.viewer.check_media_token(media_token, job_id)
        else:
            self.authorize(token)
        return self.viewer.video(self.store.get(job_id))

    async def wait(self, job_id: str) -> JobRecord:
        """The job once it has ended; if the caller goes away meanwhile, the job is cancelled
        and its files deleted (``POST /v1/track`` when the client disconnects)."""
        try:
            return await self.runner.wait(job_id)
        except asyncio.CancelledError:
            await self.runner.cancel(job_id)
            raise

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job that has not ended and delete its files. A job that had ended keeps
        its state and loses its result files. Either way the record stays readable until
        ``expires_at`` (docs/api.md), and a second ``DELETE``, or ten at once, answers the same."""
        record = self.store.get(job_id)
        if not record.state.terminal:
            record = await self.runner.cancel(job_id)
        if record.results:
            record = self.store.update(job_id, results={})  # first: /result stops offering them
        self.store.discard_work_files(job_id, keep_results=False)
        return record

    def result(self, job_id: str, fmt: str) -> ResultFile:
        return self.result_of(self.store.get(job_id), fmt)

    def result_of(self, record: JobRecord, fmt: str) -> ResultFile:
        """The result file of a succeeded job; ``JobNotFinished`` for any other."""
        record.require_succeeded()
        if fmt not in record.results:
            raise InvalidOption(f"format {fmt!r} was not requested for this job; available: "
                                f"{', '.join(record.results) or 'none'}", option="format")
        path = self.store.result_path(record.id, fmt)
        media_type, suffix = result_media(fmt, path)  # bvh: one track's text, or a zip of several
        return ResultFile(path, media_type, f"{record.id}.{suffix}", record.id)

    def events(self, job_id: str, base_url: str,
               last_event_id: str | None = None) -> AsyncIterator[StatusEvent | None]:
        """The job's view at each change, until it ends or ``jobs.events_stream_s`` passes; None
        where a keep-alive is due. ``last_event_id``: the id of the last event the client has
        (``Last-Event-ID``): the stream starts with the job's status only if it changed since.
        Raises ``JobNotFound`` before the first view for an unknown job."""
        self.store.get(job_id)
        return self._follow(job_id, base_url, _event_time(last_event_id))

    async def _follow(self, job_id: str, base_url: str,
                      seen_up_to: float | None) -> AsyncIterator[StatusEvent | None]:
        last: JobView | None = None
        started = last_sent = time.monotonic()
        while True:
            record = self.store.get(job_id)
            view = JobView.of(record, base_url)
            event_id = f"{record.updated_at:.6f}"
            # timings change on every read: a new event only when the job moved
            if last is None and seen_up_to is not None and float(event_id) <= seen_up_to:
                last = view  # the client has this one already
            elif last is None or view.model_copy(update={"timings": last.timings}) != last:
                yield StatusEvent(event_id, view)
                last, last_sent = view, time.monotonic()
            elif time.monotonic() - last_sent > EVENTS_KEEPALIVE_S:
                yield None
                last_sent = time.monotonic()
            if view.state.terminal or time.monotonic() - started > self.settings.jobs.events_stream_s:
                return
            await asyncio.sleep(EVENTS_POLL_S)

    # --- uploads in parts ------------------------------------------------------------------

    def create_upload(self, filename: str, size: int | None, idempotency_key: str | None = None) -> PartialUpload:
        """A new upload in parts; with ``idempotency_key``, the one that key made, while it lasts."""
        if size is not None and size < 0:
            raise InvalidOption("size must not be negative", option="size")
        key = None if idempotency_key is None else checked_key(idempotency_key)
        return self.parts.create(filename, size, self.settings.limits.max_upload_bytes, key)

    async def append_part(self, upload_id: str, offset: int, body: AsyncIterator[bytes],
                          content_length: int | None) -> PartialUpload:
        """Append the part that starts at byte ``offset``: all of it or nothing."""
        limits = self.settings.limits
        if (content_length or 0) > limits.max_part_bytes:
            raise part_too_large(limits.max_part_bytes)
        upload = await self.parts.append(upload_id, offset, body, limits.max_part_bytes, limits.max_upload_bytes)
        self.observer.upload_received(upload.offset - offset)  # append refuses a part not at ``offset``
        return upload

    def upload(self, upload_id: str) -> PartialUpload:
        return self.parts.get(upload_id)

    def delete_upload(self, upload_id: str) -> None:
        self.parts.delete(upload_id)

    def upload_view(self, upload: PartialUpload, base_url: str) -> UploadView:
        limits = self.settings.limits
        return UploadView.of(upload, base_url, limits.max_part_bytes, limits.upload_idle_s)

    # --- readiness -------------------------------------------------------------------------

    async def readiness(self) -> ReadyView:
        """Ready when every stage answers within ``READY_TIMEOUT_S`` and the engine is loaded;
        else ``NotReady`` with each stage's report."""
        report: dict[str, StageReadiness] = {}
        for name, check in self.stages.readiness_checks().items():
            try:
                answer = await asyncio.wait_for(check, READY_TIMEOUT_S)
            except asyncio.TimeoutError:
                report[name] = StageReadiness(ready=False, message=f"no answer within {READY_TIMEOUT_S:.0f} s "
                                                                   "(starting, or no replica can be scheduled)")
            except PipelineError as exc:
                report[name] = StageReadiness(ready=False, **exc.to_dict())
            else:
                report[name] = StageReadiness(ready=True, engine=answer if isinstance(answer, dict) else None)
        if not all(stage.ready for stage in report.values()):
            raise NotReady("not every deployment is ready", deployments=readiness_json(report))
        return ReadyView(status="ready", deployments=report)


def checked_key(key: str) -> str:
    """An ``Idempotency-Key`` as clients send them (a UUID, say): 1-255 printable ASCII characters."""
    if not 0 < len(key) <= 255 or not key.isascii() or not key.isprintable():
        raise InvalidRequest("Idempotency-Key must be 1 to 255 printable ASCII characters")
    return key


def request_digest(options: Mapping[str, str], filename: str, video: Path) -> str:
    """What a job's request asked for: its options, the video's name and its bytes."""
    digest = hashlib.sha256(compact_json([sorted(options.items()), filename]).encode())
    with open(video, "rb") as fp:
        for block in iter(lambda: fp.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parts_digest(options: Mapping[str, str], filename: str, upload_id: str) -> str:
    """The same for a job of an upload in parts: the upload's id stands for its bytes (a request
    sent again finds its upload taken, so the bytes cannot be compared)."""
    return hashlib.sha256(compact_json([sorted(options.items()), filename, upload_id]).encode()).hexdigest()


def _same_request(existing: JobRecord | None, digest: str | None) -> JobRecord:
    if existing is None:  # its job expired between the two looks: as if the key were new
        raise IdempotencyKeyReused("the Idempotency-Key's job has just expired; send the request with a new key")
    if existing.request_digest != digest:
        raise IdempotencyKeyReused(f"this Idempotency-Key was used for job {existing.id} with another request "
                                   "(other options or another video); use a new key", job_id=existing.id)
    return existing
