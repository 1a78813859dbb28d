"""Ingress deployment: the HTTP API (FastAPI through ``serve.ingress``) and the job runner.

Uploads stream to the store's spool folder; jobs run in the background on this replica's
``JobRunner``, which drives the decode, tracking and aggregation deployments chunk by chunk.
Every error leaves as JSON ``{"error": {"code", "message", ...}}`` with the status of its
type (pose_pipeline.errors). docs/api.md describes the endpoints.

(No ``from __future__ import annotations`` here: FastAPI reads the endpoint annotations at
run time, through Serve's wrapper, and must see real classes.)
"""


import asyncio
import hmac
import json
import os
import time
from dataclasses import asdict
from typing import Any, AsyncIterator, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
import ray
from ray import serve
from ray.serve.handle import DeploymentHandle, DeploymentResponse
from starlette.exceptions import HTTPException

from pose_pipeline import __version__
from pose_pipeline.config import Settings
from pose_pipeline.errors import (ALL_ERRORS, FileTooLarge, InternalError, InvalidOption, InvalidRequest,
                                  JobNotFinished, NotReady, Overloaded, PipelineError, Unauthorized)
from pose_pipeline.jobs import RETRY_AFTER_S, ChunkReceipt, ChunkTask, JobObserver, JobRunner
from pose_pipeline.parts import PartialUpload, PartUploads, part_too_large
from pose_pipeline.pipeline import JobOptions, decode_options, expected_frames
from pose_pipeline.serialize import MEDIA_TYPES
from pose_pipeline.store import JobRecord, JobState, JobStore, new_job_id
from pose_pipeline.uploads import Upload, check_content, receive, too_large

from .common import as_pipeline_error, log, open_store, runner_death_cause
from .decode import ChunkRef
from .metrics import Metrics

app = FastAPI(title="pose-pipeline", version=__version__,
              description="3D human pose tracking on video: upload a video, get per-frame tracks.")

_STATUS_BY_CODE = {cls.code: cls.status for cls in ALL_ERRORS}
_READY_TIMEOUT_S = 5.0


def error_response(exc: PipelineError) -> JSONResponse:
    headers = {"Retry-After": str(exc.details.get("retry_after_s", RETRY_AFTER_S))} \
        if isinstance(exc, Overloaded) or exc.status == 503 else None
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.status, headers=headers)


@app.exception_handler(PipelineError)
async def _pipeline_error(request: Request, exc: PipelineError) -> JSONResponse:
    return error_response(exc)


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(InvalidOption(f"invalid request: {exc.errors()}"))


@app.exception_handler(HTTPException)
async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse({"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code)


@app.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path)
    return error_response(InternalError(f"unexpected error: {type(exc).__name__}"))


class RayStages:
    """``jobs.Stages`` over the deployments. Frames go from the Decode replica to a tracking
    replica through the object store; here pass only references (``ChunkRef``). Tracking and
    aggregation are chained, so a chunk's output goes to aggregation without passing here."""

    def __init__(self, decode: DeploymentHandle, tracking: DeploymentHandle, aggregation: DeploymentHandle):
        self.decoding, self.tracking, self.aggregation = decode, tracking, aggregation

    async def decode(self, task: ChunkTask) -> ChunkRef:
        return await _reply(self.decoding.decode.remote(task))

    async def track(self, decoded: ChunkRef) -> ChunkReceipt:
        tracked = self.tracking.track.remote(decoded)
        return await _reply(self.aggregation.commit.remote(tracked), tracked)

    async def finalize(self, job_id: str) -> dict[str, int]:
        return await _reply(self.aggregation.finalize.remote(job_id))


async def _reply(response: DeploymentResponse, *upstream: DeploymentResponse) -> Any:
    """The response's value, or its typed error; cancelling stops the upstream calls too."""
    try:
        return await response
    except asyncio.CancelledError:  # deadline or cancellation: stop the work downstream too
        for pending in (response, *upstream):
            pending.cancel()
        raise
    except Exception as exc:
        raise as_pipeline_error(exc) from None


class MetricsObserver(JobObserver):
    """Job events as metrics and one JSON log line each (job_id, state, stage, code)."""

    def __init__(self, metrics: Metrics, store: JobStore | None = None) -> None:
        self.metrics = metrics
        self.store = store
        self._measuring: asyncio.Task | None = None
        self._stale = False

    def update_store_bytes(self) -> None:
        """Measure the store (``pose_result_store_bytes``) in a thread, off the event loop;
        requests that arrive during a measurement are folded into one more."""
        if self.store is None:
            return
        self._stale = True
        if self._measuring is None or self._measuring.done():
            self._measuring = asyncio.get_running_loop().create_task(self._measure())

    async def _measure(self) -> None:
        while self._stale:
            self._stale = False
            try:
                usage = await asyncio.to_thread(self.store.usage_bytes)
            except OSError:  # a file removed while the store was walked: the next update has it
                continue
            self.metrics.result_store_bytes.set(usage)

    def state_changed(self, record: JobRecord, **extra: Any) -> None:
        fields = {"pose_job_id": record.id, "state": record.state.value, "stage": record.stage,
                  "frames_done": record.frames_done, **extra}
        log.info("job %s %s", record.id, record.state.value, extra=fields)
        if record.state.terminal:
            error = record.error or {}
            code = error.get("code", "")
            self.metrics.jobs_finished.inc(tags={"state": record.state.value, "code": code})
            self.metrics.job_duration.observe(time.time() - record.created_at, tags={"state": record.state.value})
            if code == "out_of_memory" and error.get("kind") == "node":
                self.metrics.oom_events.inc(tags={"kind": "node"})  # the last attempt: not retried
        if record.state.terminal or record.state is JobState.queued:
            self.update_store_bytes()  # an upload arrived, or work files were removed

    def chunk_retry(self, record: JobRecord, error: PipelineError) -> None:
        super().chunk_retry(record, error)
        self.metrics.chunk_retries.inc(tags={"code": error.code})
        # Host and GPU OOMs are counted by the Tracking replica that caught them; a node OOM
        # (Ray's memory monitor killed the worker) only here, where the error arrives.
        if error.code == "out_of_memory" and error.details.get("kind") == "node":
            self.metrics.oom_events.inc(tags={"kind": "node"})

    def queue_changed(self, queued: int, running: int) -> None:
        self.metrics.jobs_in_state.set(queued, tags={"state": "queued"})
        self.metrics.jobs_in_state.set(running, tags={"state": "running"})


@serve.deployment(name="Ingress", max_ongoing_requests=128, max_queued_requests=256,
                  ray_actor_options={"num_cpus": 0.1})
@serve.ingress(app)
class Ingress:
    async def __init__(self, settings: Settings, decode: DeploymentHandle, tracking: DeploymentHandle,
                       aggregation: DeploymentHandle) -> None:
        self.settings = settings
        self.store = open_store(settings)
        self.store.clean_spool(older_than_s=3600)
        self.parts = PartUploads(self.store.parts_dir())
        self.decode, self.tracking, self.aggregation = decode, tracking, aggregation
        self.metrics = Metrics.create()
        owner = f"ingress-{ray.get_runtime_context().get_actor_id()}"  # runner_death_cause reads it back
        self.runner = JobRunner(self.store, RayStages(decode, tracking, aggregation), settings.jobs, owner,
                                MetricsObserver(self.metrics, self.store), death_cause=runner_death_cause)
        self.runner.start()
        self._housekeeping = asyncio.create_task(self._keep_house())

    async def __del__(self) -> None:
        self._housekeeping.cancel()
        await self.runner.stop()

    async def _keep_house(self, period_s: float = 60.0) -> None:
        """Remove idle uploads in parts; measure the store (``pose_result_store_bytes`` also
        falls when jobs expire or are deleted)."""
        while True:
            for upload_id in self.parts.expire(self.settings.limits.upload_idle_s):
                log.info("upload %s removed: idle", upload_id, extra={"upload_id": upload_id})
            self.runner.observer.update_store_bytes()
            await asyncio.sleep(period_s)

    # --- helpers ---------------------------------------------------------------------------

    def _authorize(self, request: Request) -> None:
        tokens = self.settings.auth.tokens
        if not tokens:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(token, t) for t in tokens):
            raise Unauthorized("missing or invalid bearer token (Authorization: Bearer <token>)")

    async def _create_job(self, request: Request, endpoint_params: tuple[str, ...] = (),
                          result_format: str | None = None) -> JobRecord:
        """Receive the upload, validate options and video, store the job and start it.
        ``endpoint_params`` are query parameters of the endpoint itself, not job options;
        ``result_format`` is one the job must produce."""
        self._authorize(request)
        self.runner.admit()  # refuse before reading a large body we could not run
        query = {k: v for k, v in request.query_params.items() if k not in endpoint_params}
        upload_id = query.pop("upload", None)
        filename = os.path.basename(query.pop("filename", "") or "")
        upload = await (self._take_parts(upload_id, request) if upload_id else self._receive(request))
        upload.filename = os.path.basename(upload.fields.pop("filename", "") or "") or filename or upload.filename
        try:
            options = JobOptions.parse({**upload.fields, **query})
            if result_format is not None and result_format not in options.formats:
                raise InvalidOption(f"format {result_format!r} is not among the requested formats "
                                    f"{', '.join(options.formats)}", option="format")
            engine = options.engine or self.settings.engine.name
            if engine != self.settings.engine.name:
                raise InvalidOption(f"engine {engine!r} is not deployed here; this service runs "
                                    f"{self.settings.engine.name!r}", option="engine")
            decoding = decode_options(self.settings, options)
            try:
                video = await self.decode.probe.remote(str(upload.path))
            except Exception as exc:
                raise as_pipeline_error(exc) from None
            now = time.time()
            record = JobRecord(id=new_job_id(), state=JobState.queued, created_at=now, updated_at=now,
                               filename=upload.filename or "upload", options=options.model_dump(mode="json"),
                               video=video.to_dict(), frames_total=expected_frames(video, decoding),
                               engine=engine, decoding=asdict(decoding))
            self.store.create(record, upload.path)
        except BaseException:
            upload.path.unlink(missing_ok=True)
            raise
        self.runner.observer.state_changed(record, upload_name=record.filename, upload_bytes=upload.size)
        self.runner.submit(record)
        return record

    async def _receive(self, request: Request) -> Upload:
        limits = self.settings.limits
        limit = min(limits.max_upload_bytes, limits.max_body_bytes)
        if int(request.headers.get("content-length") or 0) > limit:
            raise self._too_large_for_one_request(limit)
        try:
            upload = await receive(request.stream(), request.headers.get("content-type", ""),
                                   self.store.new_upload_path(), limit)
        except FileTooLarge:
            raise self._too_large_for_one_request(limit) from None
        self.metrics.upload_bytes.inc(upload.size)
        return upload

    def _too_large_for_one_request(self, limit: int) -> FileTooLarge:
        if limit == self.settings.limits.max_upload_bytes:
            return too_large(limit)
        return FileTooLarge(f"a file sent in one request may hold at most {limit} bytes (limits.max_body_bytes): "
                            "send larger files in parts (POST /v1/uploads; pose-pipeline submit does)",
                            limit_bytes=limit)

    async def _take_parts(self, upload_id: str, request: Request) -> Upload:
        async for piece in request.stream():
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

    def _upload_view(self, upload: PartialUpload, request: Request) -> dict[str, Any]:
        url = str(request.base_url).rstrip("/") + f"/v1/uploads/{upload.id}"
        return {**upload.to_dict(), "max_part_bytes": self.settings.limits.max_part_bytes,
                "expires_at": upload.updated_at + self.settings.limits.upload_idle_s, "url": url}

    def _view(self, record: JobRecord, request: Request) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/") + f"/v1/jobs/{record.id}"
        ended = record.finished_at or time.time()
        return {
            "job_id": record.id,
            "state": record.state.value,
            "stage": record.stage,
            "progress": {
                "frames_done": record.frames_done,
                "frames_total": max(record.frames_total, record.frames_done),
                "fraction": round(min(1.0, record.frames_done / record.frames_total), 4) if record.frames_total else 0.0,
                "chunks_done": record.chunks_done,
            },
            "filename": record.filename,
            "video": record.video,
            "options": record.options,
            "engine": record.engine,
            "created_at": record.created_at,
            "started_at": record.started_at,
            "finished_at": record.finished_at,
            "expires_at": record.expires_at,
            "timings": {
                "queued_s": round((record.started_at or ended) - record.created_at, 3),
                "running_s": round(ended - record.started_at, 3) if record.started_at else 0.0,
            },
            "retries": record.retries,
            "error": record.error,
            "results": {fmt: {"url": f"{base}/result?format={fmt}", "bytes": size}
                        for fmt, size in record.results.items()},
            "urls": {"self": base, "events": f"{base}/events", "result": f"{base}/result"},
        }

    def _result(self, record: JobRecord, fmt: str) -> FileResponse:
        if record.state is not JobState.succeeded:
            if record.state.terminal:
                raise JobNotFinished(f"the job ended {record.state.value}; it has no result",
                                     state=record.state.value, job_error=record.error)
            raise JobNotFinished(f"the job is {record.state.value}; poll it or follow its events",
                                 state=record.state.value)
        if fmt not in record.results:
            raise InvalidOption(f"format {fmt!r} was not requested for this job; available: "
                                f"{', '.join(record.results) or 'none'}", option="format")
        return FileResponse(self.store.result_path(record.id, fmt), media_type=MEDIA_TYPES[fmt],
                            filename=f"{record.id}.{fmt}", headers={"X-Job-Id": record.id})

    # --- endpoints -------------------------------------------------------------------------

    @app.post("/v1/jobs", status_code=202)
    async def submit(self, request: Request) -> JSONResponse:
        """Upload a video (raw body or multipart 'file'); the job runs in the background."""
        record = await self._create_job(request)
        return JSONResponse(self._view(record, request), status_code=202,
                            headers={"Location": f"/v1/jobs/{record.id}"})

    @app.post("/v1/track")
    async def track(self, request: Request, format: str = "json"):
        """Upload a video and wait for its result in the same request (short videos)."""
        if format not in MEDIA_TYPES:
            raise InvalidOption(f"format must be one of {', '.join(MEDIA_TYPES)}", option="format")
        record = await self._create_job(request, endpoint_params=("format",), result_format=format)
        try:
            record = await self.runner.wait(record.id)
        except asyncio.CancelledError:  # the client went away: stop the work, remove its files
            await self.runner.cancel(record.id)
            raise
        if record.state is JobState.failed:
            error = record.error or {}
            status = _STATUS_BY_CODE.get(error.get("code"), 500)
            return JSONResponse({"error": {**error, "job_id": record.id}}, status_code=status,
                                headers={"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None)
        return self._result(record, format)

    @app.post("/v1/uploads", status_code=201)
    async def create_upload(self, request: Request, filename: str = "",
                            size: Optional[int] = None) -> JSONResponse:
        """Start an upload in parts (large files: each request holds one bounded part)."""
        self._authorize(request)
        if size is not None and size < 0:
            raise InvalidOption("size must not be negative", option="size")
        upload = self.parts.create(filename, size, self.settings.limits.max_upload_bytes)
        return JSONResponse(self._upload_view(upload, request), status_code=201,
                            headers={"Location": f"/v1/uploads/{upload.id}"})

    @app.put("/v1/uploads/{upload_id}")
    async def upload_part(self, upload_id: str, request: Request, offset: int) -> dict[str, Any]:
        """Append the body as the part that starts at byte ``offset``."""
        self._authorize(request)
        max_part = self.settings.limits.max_part_bytes
        if int(request.headers.get("content-length") or 0) > max_part:
            raise part_too_large(max_part)
        upload = await self.parts.append(upload_id, offset, request.stream(), max_part,
                                         self.settings.limits.max_upload_bytes)
        self.metrics.upload_bytes.inc(upload.offset - offset)  # append refuses a part not at ``offset``
        return self._upload_view(upload, request)

    @app.get("/v1/uploads/{upload_id}")
    async def upload_status(self, upload_id: str, request: Request) -> dict[str, Any]:
        self._authorize(request)
        return self._upload_view(self.parts.get(upload_id), request)

    @app.delete("/v1/uploads/{upload_id}")
    async def delete_upload(self, upload_id: str, request: Request) -> dict[str, Any]:
        self._authorize(request)
        self.parts.delete(upload_id)
        return {"upload_id": upload_id, "deleted": True}

    @app.get("/v1/jobs/{job_id}")
    async def status(self, job_id: str, request: Request) -> dict[str, Any]:
        self._authorize(request)
        return self._view(self.store.get(job_id), request)

    @app.get("/v1/jobs/{job_id}/events")
    async def events(self, job_id: str, request: Request) -> StreamingResponse:
        """Server-Sent Events: a ``status`` event at each change, until the job ends."""
        self._authorize(request)
        self.store.get(job_id)  # 404 before the stream starts

        async def stream() -> AsyncIterator[str]:
            last, last_sent = None, time.monotonic()
            while True:
                view = self._view(self.store.get(job_id), request)
                # timings change on every read: a new event only when the job moved
                changed = {k: v for k, v in view.items() if k != "timings"}
                if changed != last:
                    yield f"event: status\ndata: {json.dumps(view, separators=(',', ':'))}\n\n"
                    last, last_sent = changed, time.monotonic()
                elif time.monotonic() - last_sent > 15:
                    yield ": keep-alive\n\n"
                    last_sent = time.monotonic()
                if view["state"] in ("succeeded", "failed", "cancelled"):
                    return
                await asyncio.sleep(0.5)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @app.get("/v1/jobs/{job_id}/result")
    async def result(self, job_id: str, request: Request, format: str = "json") -> FileResponse:
        self._authorize(request)
        return self._result(self.store.get(job_id), format)

    @app.delete("/v1/jobs/{job_id}")
    async def delete(self, job_id: str, request: Request) -> dict[str, Any]:
        """Cancel a job that has not ended and delete its files; its record stays until it
        expires, so that its state can still be read. A job that had already ended is
        deleted entirely (404 afterwards)."""
        self._authorize(request)
        record = self.store.get(job_id)
        if record.state.terminal:
            self.store.delete(job_id)
            return {**self._view(record, request), "deleted": True}
        record = await self.runner.cancel(job_id)
        self.store.discard_work_files(job_id, keep_results=False)
        return self._view(record, request)

    @app.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(self) -> JSONResponse:
        """Ready when every deployment answers and the engine is loaded."""
        checks = {"Decode": self.decode.ping.remote(), "Tracking": self.tracking.ready.remote(),
                  "Aggregation": self.aggregation.ping.remote()}
        report: dict[str, Any] = {}
        ready = True
        for name, response in checks.items():
            try:
                value = await asyncio.wait_for(response, _READY_TIMEOUT_S)
                report[name] = {"ready": True, **({"engine": value} if isinstance(value, dict) else {})}
            except asyncio.TimeoutError:
                response.cancel()
                ready = False
                report[name] = {"ready": False, "message": f"no answer within {_READY_TIMEOUT_S:.0f} s "
                                                           "(starting, or no replica can be scheduled)"}
            except Exception as exc:
                ready = False
                report[name] = {"ready": False, **as_pipeline_error(exc).to_dict()}
        if not ready:
            error = NotReady("not every deployment is ready", deployments=report)
            return error_response(error)
        return JSONResponse({"status": "ready", "deployments": report})
