"""Who may call the API: the bearer token of a request, as a FastAPI dependency.

The HTTP side (the ``Authorization`` header and its scheme) is read here; which tokens are
valid is the service's (``JobService.authorize``, from ``auth.tokens``).
"""

from typing import Annotated

from fastapi import Depends, Request

from .service import JobService


def service_of(request: Request) -> JobService:
    """The job service behind the app (``create_app`` puts it in the app's state)."""
    service: JobService = request.app.state.service
    return service


#: An endpoint's parameter ``service: Service`` is the job service behind the app.
Service = Annotated[JobService, Depends(service_of)]


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None for any other."""
    scheme, _, token = authorization.partition(" ")
    return token if scheme.lower() == "bearer" else None


def request_token(request: Request) -> str | None:
    return bearer_token(request.headers.get("authorization", ""))


def authorized(request: Request) -> None:
    """The dependency of every endpoint that needs the bearer token."""
    service_of(request).authorize(request_token(request))


#: ``dependencies=`` of an endpoint that needs the bearer token.
AUTH = [Depends(authorized)]
