"""Uploads in parts, for large files: create, append a part, status, delete."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..auth import AUTH, Service
from ..params import optional_whole_number, required_whole_number
from ..responses import base_url, content_length
from ..schemas import UploadDeleted, UploadView

router = APIRouter()


@router.post("/v1/uploads", status_code=201, dependencies=AUTH, response_model=UploadView)
async def create_upload(service: Service, request: Request, filename: str = "",
                        size: str | None = None) -> JSONResponse:
    """Start an upload in parts (large files: each request holds one bounded part); ``size``:
    the file's size in bytes, if known (refused at once when over the limit)."""
    upload = service.create_upload(filename, optional_whole_number(size, "size", minimum=0),
                                   request.headers.get("idempotency-key"))
    return JSONResponse(service.upload_view(upload, base_url(request)).to_json(), status_code=201,
                        headers={"Location": f"/v1/uploads/{upload.id}"})


@router.put("/v1/uploads/{upload_id}", dependencies=AUTH, response_model=UploadView)
async def upload_part(service: Service, upload_id: str, request: Request, offset: str | None = None) -> dict[str, Any]:
    """Append the body as the part that starts at byte ``offset``."""
    start = required_whole_number(offset, "offset", minimum=0)
    upload = await service.append_part(upload_id, start, request.stream(), content_length(request))
    return service.upload_view(upload, base_url(request)).to_json()


@router.get("/v1/uploads/{upload_id}", dependencies=AUTH, response_model=UploadView)
async def upload_status(service: Service, upload_id: str, request: Request) -> dict[str, Any]:
    return service.upload_view(service.upload(upload_id), base_url(request)).to_json()


@router.delete("/v1/uploads/{upload_id}", dependencies=AUTH, response_model=UploadDeleted)
async def delete_upload(service: Service, upload_id: str) -> dict[str, Any]:
    service.delete_upload(upload_id)
    return UploadDeleted(upload_id=upload_id, deleted=True).to_json()
