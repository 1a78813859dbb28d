"""Health: ``/healthz`` (the process answers) and ``/readyz`` (every deployment answers and
the engine is loaded)."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..auth import Service
from ..schemas import ReadyView, readiness_json

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyView)
async def readyz(service: Service) -> JSONResponse:
    """Ready when every deployment answers and the engine is loaded."""
    ready = await service.readiness()
    return JSONResponse({"status": ready.status, "deployments": readiness_json(ready.deployments)})
