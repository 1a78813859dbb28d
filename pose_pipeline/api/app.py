"""The HTTP API: ``create_app`` builds the FastAPI application in front of a ``JobService``.

The endpoints are in ``routes/``, one module per resource; here: the service in the app's
state, its start and stop with the app's lifespan, and the error handlers. Every error leaves
as JSON ``{"error": {"code", "message", ...details}}`` with the status of its type
(pose_pipeline/errors.py), through ``responses.error_response`` and nowhere else.
docs/api.md describes the endpoints; the OpenAPI schema (``/docs``, ``/openapi.json``)
carries the bodies of pose_pipeline/api/schemas.py.

(No ``from __future__ import annotations`` here: FastAPI reads the endpoint annotations at
run time and must see real classes.)
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from .. import __version__
from ..errors import InvalidOption, PipelineError, unexpected
from .responses import error_response
from .routes import health, jobs, uploads, viewer
from .schemas import ErrorBody
from .service import JobService

_FRAMEWORK_CODES = {404: "not_found", 405: "method_not_allowed"}
_ERRORS: dict[int | str, dict[str, Any]] = {"default": {"model": ErrorBody, "description": "an error (docs/api.md)"}}


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
    app.state.service = service  # the endpoints reach it through the request (auth.service_of)
    _add_error_handlers(app)
    for routes in (jobs, viewer, uploads, health):
        app.include_router(routes.router)
    return app


def _add_error_handlers(app: FastAPI) -> None:
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

    async def unhandled(request: Request, exc: Exception) -> JSONResponse:
        return error_response(unexpected(exc, f"the API ({request.method} {request.url.path})"))

    app.add_exception_handler(PipelineError, pipeline_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unhandled)

