"""The viewer: its page and static files, and what the page reads (frames by range, the
tracks' timeline, the uploaded video with a media token)."""

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from ... import viewer
from ..auth import AUTH, Service, request_token
from ..params import whole_number
from ..schemas import FramesPage, MediaTokenView, Timeline

router = APIRouter()

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


@router.get("/v1/jobs/{job_id}/viewer", response_class=HTMLResponse)
async def viewer_page(service: Service, job_id: str) -> Response:
    """The job's viewer page. No auth: a browser cannot send the bearer header when it
    opens a page; the page holds no job data and asks for the token to read it."""
    service.get(job_id)  # 404 for an unknown job (ids are random: this tells nothing)
    return _viewer_file(viewer.PAGE)


@router.get("/v1/viewer/{name}", include_in_schema=False)
async def viewer_asset(name: str) -> Response:
    return _viewer_file(name)


@router.get("/v1/jobs/{job_id}/frames", dependencies=AUTH, response_model=FramesPage)
async def frames(service: Service, job_id: str, start: str | None = None,
                 count: str | None = None) -> JSONResponse:
    """Frames ``start`` .. ``start + count - 1`` of the result (``count`` default 256, capped
    at 1000), each as in the result JSON."""
    first = whole_number(start, "start", default=0, minimum=0)
    many = whole_number(count, "count", default=256, minimum=1)
    return JSONResponse((await service.frames(job_id, first, many)).to_json())


@router.get("/v1/jobs/{job_id}/tracks", dependencies=AUTH, response_model=Timeline)
async def tracks(service: Service, job_id: str) -> JSONResponse:
    """Per track, the runs of frames in which it appears (the viewer's timeline)."""
    return JSONResponse((await service.timeline(job_id)).to_json())


@router.post("/v1/jobs/{job_id}/media-token", dependencies=AUTH, response_model=MediaTokenView)
async def media_token(service: Service, job_id: str) -> JSONResponse:
    """A short-lived token for this job's video URL (``?media_token=``), for a <video>
    element, which cannot send the bearer header."""
    return JSONResponse(service.media_token(job_id).to_json())


@router.get("/v1/jobs/{job_id}/video", response_class=FileResponse)
async def video(service: Service, job_id: str, request: Request,
                media_token: str | None = None) -> FileResponse:
    """The uploaded video (HTTP ranges), with the bearer header or a media token."""
    upload = service.video(job_id, request_token(request), media_token)
    return FileResponse(upload.path, media_type=upload.media_type, filename=upload.filename,
                        content_disposition_type="inline", headers={"X-Job-Id": job_id, "Cache-Control": "private"})
