"""What the endpoints answer with, written once: errors (JSON body, status, ``Retry-After``),
job views, result files, and the request facts they read (base URL, ``Content-Length``)."""

from typing import Any

from fastapi import Request
from fastapi.responses import FileResponse, JSONResponse

from ..errors import RETRY_AFTER_S, InvalidRequest, Overloaded, PipelineError
from ..jobs.store import JobRecord
from .service import JobService, ResultFile


def error_response(exc: PipelineError) -> JSONResponse:
    """The response of an error: its JSON body and status, ``Retry-After`` on every 503."""
    return error_json(exc.to_dict(), exc)


def error_json(body: dict[str, Any], exc: PipelineError) -> JSONResponse:
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


def base_url(request: Request) -> str:
    return str(request.base_url)


def job_json(service: JobService, record: JobRecord, request: Request, status_code: int = 200,
             **extra: Any) -> JSONResponse:
    return JSONResponse(service.view(record, base_url(request)).to_json() | extra, status_code=status_code)


def file_response(result: ResultFile) -> FileResponse:
    return FileResponse(result.path, media_type=result.media_type, filename=result.filename,
                        headers={"X-Job-Id": result.job_id})
