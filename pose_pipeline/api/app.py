"""The HTTP API: ``create_app`` builds the FastAPI application in front of a ``JobService``.

Every error leaves as JSON ``{"error": {"code", "message", ...details}}`` with the status of
its type (pose_pipeline/errors.py), here and nowhere else. docs/api.md describes the
endpoints; the OpenAPI schema (``/docs``, ``/openapi.json``) carries the bodies of
pose_pipeline/api/schemas.py. The app starts and stops the service with its lifespan.

The upload endpoints read the body and the options (any query parameter) themselves, so that
a video is streamed to disk, never held, and unknown options are refused by name.

(No ``from __future__ import annotations`` here: FastAPI reads the endpoint annotations at
run time and must see real classes.)
"""

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from .. import __version__, viewer
from ..errors import (RETRY_AFTER_S, InternalError, InvalidOption, InvalidRequest, Overloaded, PipelineError,
                      from_dict)
from .listing import JobQuery, whole_number
from ..results.writers import MEDIA_TYPES
from .service import JobService, ResultFile
from ..jobs.store import JobRecord, JobState
from .uploads import Upload
from .schemas import (ErrorBody, FramesPage, JobList, JobView, MediaTokenView, ReadyView, Timeline, UploadDeleted,
                      UploadView, readiness_json)

_FRAMEWORK_CODES = {404: "not_found", 405: "method_not_allowed"}
_ERRORS: dict[int | str, dict[str, Any]] = {"default": {"model": ErrorBody, "description": "an error (docs/api.md)"}}


def error_response(exc: PipelineError) -> JSONResponse:
    """The response of an error: its JSON body and status, ``Retry-After`` on every 503."""
    return _error_json(exc.to_dict(), exc)


def _error_json(body: dict[str, Any], exc: PipelineError) -> JSONResponse:
    headers = None
    if exc.status == 503:
        after = exc.retry_after_s if isinstance(exc, Overloaded) and exc.retry_after_s else RETRY_AFTER_S
        headers = {"Retry-After": str(after)}
    return JSONResponse({"error": body}, status_code=exc.status, headers=headers)


def content_length(request: Request) -> int | None:
    """The request's ``Content-Length``, if it has one; ``InvalidRequest`` if it is not a
    number of bytes (the server in front may not have checked it)."""
    length = request.headers.get("content-length")
    if length is None:
        return None
    if not length.isascii() or not length.strip().isdigit():
        raise InvalidRequest(f"Content-Length must be a number of bytes, not {length[:40]!r}")
    return int(length)


#: The viewer's files may load nothing but the service's own: no CDN, no inline code, no frames.
_VIEWER_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "media-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated, so that a new version of the service shows at once
}


def _viewer_file(name: str) -> Response:
    try:
        content = viewer.asset(name)
    except KeyError:
        raise HTTPException(404, f"no viewer file {name!r}") from None
    return Response(content, media_type=viewer.ASSETS[name], headers=_VIEWER_HEADERS)


def create_app(service: JobService) -> FastAPI:
    """The API in front of ``service``, which the app starts and stops with its lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="pose-pipeline", version=__version__, lifespan=lifespan, responses=_ERRORS,
                  description="3D human pose tracking on video: upload a video, get per-frame tracks.")
    app.state.service = service  # the service behind the app, for whoever holds only the app
    _add_error_handlers(app, service.log)

    def authorized(request: Request) -> None:
        service.authorize(request.headers.get("authorization", ""))

    auth = [Depends(authorized)]

    def base_url(request: Request) -> str:
        return str(request.base_url)

    async def new_job(request: Request, endpoint_params: tuple[str, ...] = (),
                      result_format: str | None = None) -> JobRecord:
        """Receive the upload (body or ``?upload=<id>``) and create the job. ``endpoint_params``
        are query parameters of the endpoint itself, not job options."""
        service.admit()  # refuse before reading a large body we could not run
        query = {k: v for k, v in request.query_params.items() if k not in endpoint_params}
        upload_id = query.pop("upload", None)
        filename = query.pop("filename", "") or ""
        upload: Upload
        if upload_id:
            upload = await service.take_parts(upload_id, request.stream())
        else:
            upload = await service.receive(request.stream(), request.headers.get("content-type", ""),
                                           content_length(request))
        return await service.create(upload, query, filename=filename, result_format=result_format)

    def job_json(record: JobRecord, request: Request, status_code: int = 200, **extra: Any) -> JSONResponse:
        return JSONResponse(service.view(record, base_url(request)).to_json() | extra, status_code=status_code)

    def file_response(result: ResultFile) -> FileResponse:
        return FileResponse(result.path, media_type=result.media_type, filename=result.filename,
                            headers={"X-Job-Id": result.job_id})

    # --- jobs ------------------------------------------------------------------------------

    @app.post("/v1/jobs", status_code=202, dependencies=auth, response_model=JobView)
    async def submit(request: Request) -> JSONResponse:
        """Upload a video (raw body or multipart 'file'); the job runs in the background."""
        record = await new_job(request)
        response = job_json(record, request, 202)
        response.headers["Location"] = f"/v1/jobs/{record.id}"
        return response

    @app.post("/v1/track", dependencies=auth, response_class=FileResponse)
    async def track(request: Request, format: str = "json") -> Any:
        """Upload a video and wait for its result in the same request (short videos)."""
        if format not in MEDIA_TYPES:
            raise InvalidOption(f"format must be one of {', '.join(MEDIA_TYPES)}", option="format")
        record = await new_job(request, endpoint_params=("format",), result_format=format)
        record = await service.wait(record.id)
        if record.state is JobState.failed and record.error is not None:
            return _error_json({**record.error, "job_id": record.id}, from_dict(record.error))
        return file_response(service.result_of(record, format))

    @app.get("/v1/jobs/{job_id}", dependencies=auth, response_model=JobView)
    async def status(job_id: str, request: Request) -> JSONResponse:
        return job_json(service.get(job_id), request)

    @app.get("/v1/jobs/{job_id}/events", dependencies=auth,
             responses={200: {"content": {"text/event-stream": {}}, "description": "a `status` event "
                                                                                  "(a JobView) at each change"}})
    async def events(job_id: str, request: Request) -> StreamingResponse:
        """Server-Sent Events: a ``status`` event at each change, until the job ends."""
        views = service.events(job_id, base_url(request))  # 404 before the stream starts

        async def stream() -> AsyncIterator[str]:
            async for view in views:
                if view is None:
                    yield ": keep-alive\n\n"
                else:
                    yield f"event: status\ndata: {json.dumps(view.to_json(), separators=(',', ':'))}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/v1/jobs/{job_id}/result", dependencies=auth, response_class=FileResponse)
    async def result(job_id: str, format: str = "json") -> FileResponse:
        return file_response(service.result(job_id, format))

    @app.delete("/v1/jobs/{job_id}", dependencies=auth, response_model=JobView)
    async def delete(job_id: str, request: Request) -> JSONResponse:
        """Cancel a job that has not ended and delete its files (a job that had ended keeps
        its state); the record stays until it expires, so that its state can still be read.
        Idempotent."""
        return job_json(await service.cancel(job_id), request)

    @app.get("/v1/jobs", dependencies=auth, response_model=JobList)
    async def list_jobs(request: Request, limit: str | None = None, cursor: str | None = None,
                        state: str | None = None) -> JSONResponse:
        """The jobs, newest first, a page at a time (``limit``, default 50, at most 500; pass
        ``next_cursor`` back as ``cursor``), optionally only those in ``state`` (comma-separated)."""
        page = service.list_page(JobQuery.parse(limit, cursor, state), base_url(request))
        return JSONResponse(page.to_json())

    # --- the viewer: a page in the browser, and what it reads --------------------------------

    @app.get("/v1/jobs/{job_id}/viewer", response_class=HTMLResponse)
    async def viewer_page(job_id: str) -> Response:
        """The job's viewer page. No auth: a browser cannot send the bearer header when it
        opens a page; the page holds no job data and asks for the token to read it."""
        service.get(job_id)  # 404 for an unknown job (ids are random: this tells nothing)
        return _viewer_file(viewer.PAGE)

    @app.get("/v1/viewer/{name}", include_in_schema=False)
    async def viewer_asset(name: str) -> Response:
        return _viewer_file(name)

    @app.get("/v1/jobs/{job_id}/frames", dependencies=auth, response_model=FramesPage)
    async def frames(job_id: str, start: str | None = None, count: str | None = None) -> JSONResponse:
        """Frames ``start`` .. ``start + count - 1`` of the result (``count`` default 256, capped
        at 1000), each as in the result JSON."""
        first = whole_number(start, "start", default=0, minimum=0)
        many = whole_number(count, "count", default=256, minimum=1)
        return JSONResponse((await service.frames(job_id, first, many)).to_json())

    @app.get("/v1/jobs/{job_id}/tracks", dependencies=auth, response_model=Timeline)
    async def tracks(job_id: str) -> JSONResponse:
        """Per track, the runs of frames in which it appears (the viewer's timeline)."""
        return JSONResponse((await service.timeline(job_id)).to_json())

    @app.post("/v1/jobs/{job_id}/media-token", dependencies=auth, response_model=MediaTokenView)
    async def media_token(job_id: str) -> JSONResponse:
        """A short-lived token for this job's video URL (``?media_token=``), for a <video>
        element, which cannot send the bearer header."""
        return JSONResponse(service.media_token(job_id).to_json())

    @app.get("/v1/jobs/{job_id}/video", response_class=FileResponse)
    async def video(job_id: str, request: Request, media_token: str | None = None) -> FileResponse:
        """The uploaded video (HTTP ranges), with the bearer header or a media token."""
        upload = service.video(job_id, request.headers.get("authorization", ""), media_token)
        return FileResponse(upload.path, media_type=upload.media_type, filename=upload.filename,
                            content_disposition_type="inline", headers={"X-Job-Id": job_id, "Cache-Control": "private"})

    # --- uploads in parts ------------------------------------------------------------------

    @app.post("/v1/uploads", status_code=201, dependencies=auth, response_model=UploadView)
    async def create_upload(request: Request, filename: str = "", size: int | None = None) -> JSONResponse:
        """Start an upload in parts (large files: each request holds one bounded part)."""
        upload = service.create_upload(filename, size)
        return JSONResponse(service.upload_view(upload, base_url(request)).to_json(), status_code=201,
                            headers={"Location": f"/v1/uploads/{upload.id}"})

    @app.put("/v1/uploads/{upload_id}", dependencies=auth, response_model=UploadView)
    async def upload_part(upload_id: str, request: Request, offset: int) -> dict[str, Any]:
        """Append the body as the part that starts at byte ``offset``."""
        upload = await service.append_part(upload_id, offset, request.stream(), content_length(request))
        return service.upload_view(upload, base_url(request)).to_json()

    @app.get("/v1/uploads/{upload_id}", dependencies=auth, response_model=UploadView)
    async def upload_status(upload_id: str, request: Request) -> dict[str, Any]:
        return service.upload_view(service.upload(upload_id), base_url(request)).to_json()

    @app.delete("/v1/uploads/{upload_id}", dependencies=auth, response_model=UploadDeleted)
    async def delete_upload(upload_id: str) -> dict[str, Any]:
        service.delete_upload(upload_id)
        return UploadDeleted(upload_id=upload_id, deleted=True).to_json()

    # --- health ----------------------------------------------------------------------------

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=ReadyView)
    async def readyz() -> JSONResponse:
        """Ready when every deployment answers and the engine is loaded."""
        ready = await service.readiness()
        return JSONResponse({"status": ready.status, "deployments": readiness_json(ready.deployments)})

    return app


def _add_error_handlers(app: FastAPI, log: logging.Logger) -> None:
    async def pipeline_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PipelineError)
        return error_response(exc)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(InvalidOption(f"invalid request: {exc.errors()}"))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = _FRAMEWORK_CODES.get(exc.status_code, "http_error")
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return error_response(InternalError(f"unexpected error: {type(exc).__name__}"))

    app.add_exception_handler(PipelineError, pipeline_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)

