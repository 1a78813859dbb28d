"""Jobs: submit (``POST /v1/jobs``, or ``POST /v1/track`` to wait for the result), status,
events, result, cancel and delete, the job list.

The upload endpoints read the body and the options (any query parameter) themselves, so that
a video is streamed to disk, never held, and unknown options are refused by name.
"""

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from ...errors import InvalidOption
from ...jobs.store import JobRecord, JobState
from ...results.writers import MEDIA_TYPES
from ..auth import AUTH, Service
from ..listing import JobQuery
from ..responses import base_url, content_length, error_json, file_response, job_json
from ..schemas import JobList, JobView
from ..service import JobService, client_filename, parts_digest
from ..uploads import Upload
from ...files import compact_json

router = APIRouter()

#: How long a client waits before it reconnects to an event stream that ended (``retry:``).
EVENTS_RETRY_MS = 1000


async def new_job(service: JobService, request: Request, endpoint_params: tuple[str, ...] = (),
                  result_format: str | None = None) -> JobRecord:
    """Receive the upload (body or ``?upload=<id>``) and create the job. ``endpoint_params``
    are query parameters of the endpoint itself, not job options."""
    key = request.headers.get("idempotency-key")
    query = {k: v for k, v in request.query_params.items() if k not in endpoint_params}
    upload_id = query.pop("upload", None)
    filename = query.pop("filename", "") or ""
    digest = None
    if upload_id and key is not None:  # sent again, its upload is taken: look for its job first
        digest = parts_digest(query, client_filename(filename, "", ""), upload_id)
        earlier = service.replayed(key, digest)
        if earlier is not None:
            return earlier
    service.admit()  # refuse before reading a large body we could not run
    upload: Upload
    if upload_id:
        upload = await service.take_parts(upload_id, request.stream())
    else:
        upload = await service.receive(request.stream(), request.headers.get("content-type", ""),
                                       content_length(request))
    return await service.create(upload, query, filename=filename, result_format=result_format,
                                idempotency_key=key, digest=digest)


@router.post("/v1/jobs", status_code=202, dependencies=AUTH, response_model=JobView)
async def submit(service: Service, request: Request) -> JSONResponse:
    """Upload a video (raw body or multipart 'file'); the job runs in the background."""
    record = await new_job(service, request)
    response = job_json(service, record, request, 202)
    response.headers["Location"] = f"/v1/jobs/{record.id}"
    return response


@router.post("/v1/track", dependencies=AUTH, response_class=FileResponse)
async def track(service: Service, request: Request, format: str = "json") -> Any:
    """Upload a video and wait for its result in the same request (short videos)."""
    if format not in MEDIA_TYPES:
        raise InvalidOption(f"format must be one of {', '.join(MEDIA_TYPES)}", option="format")
    record = await new_job(service, request, endpoint_params=("format",), result_format=format)
    record = await service.wait(record.id)
    if record.state is JobState.failed and record.error is not None:
        return error_json({**record.error.to_dict(), "job_id": record.id}, record.error.error())
    return file_response(service.result_of(record, format))


@router.get("/v1/jobs/{job_id}", dependencies=AUTH, response_model=JobView)
async def status(service: Service, job_id: str, request: Request) -> JSONResponse:
    return job_json(service, service.get(job_id), request)


@router.get("/v1/jobs/{job_id}/events", dependencies=AUTH,
            responses={200: {"content": {"text/event-stream": {}}, "description": "a `status` event "
                                                                                 "(a JobView) at each change"}})
async def events(service: Service, job_id: str, request: Request,
                 last_event_id: str | None = None) -> StreamingResponse:
    """Server-Sent Events: a ``status`` event at each change, each with an ``id``, until the job
    ends or ``jobs.events_stream_s`` passes; a client then resumes with ``Last-Event-ID`` (the
    header, or ``?last_event_id=``) and gets only what changed since."""
    resume = request.headers.get("last-event-id") or last_event_id
    events = service.events(job_id, base_url(request), resume)  # 404 before the stream starts

    async def stream() -> AsyncIterator[str]:
        yield f"retry: {EVENTS_RETRY_MS}\n\n"
        async for event in events:
            if event is None:
                yield ": keep-alive\n\n"
            else:
                yield f"id: {event.id}\nevent: status\ndata: {compact_json(event.view.to_json())}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/v1/jobs/{job_id}/result", dependencies=AUTH, response_class=FileResponse)
async def result(service: Service, job_id: str, format: str = "json") -> FileResponse:
    return file_response(service.result(job_id, format))


@router.delete("/v1/jobs/{job_id}", dependencies=AUTH, response_model=JobView)
async def delete(service: Service, job_id: str, request: Request) -> JSONResponse:
    """Cancel a job that has not ended and delete its files (a job that had ended keeps
    its state); the record stays until it expires, so that its state can still be read.
    Idempotent."""
    return job_json(service, await service.cancel(job_id), request)


@router.get("/v1/jobs", dependencies=AUTH, response_model=JobList)
async def list_jobs(service: Service, request: Request, limit: str | None = None, cursor: str | None = None,
                    state: str | None = None) -> JSONResponse:
    """The jobs, newest first, a page at a time (``limit``, default 50, at most 500; pass
    ``next_cursor`` back as ``cursor``), optionally only those in ``state`` (comma-separated)."""
    page = service.list_page(JobQuery.parse(limit, cursor, state), base_url(request))
    return JSONResponse(page.to_json())
