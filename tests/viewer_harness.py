"""A stand-in for the service's viewer endpoints, for the browser test (and for looking at
the page by hand: ``python tests/viewer_harness.py [--token T]`` serves a real job and prints
the viewer's URL).

A Starlette app over one finished job (a real upload and its real result JSON, made by the
blazepose engine: tests/real_jobs.py) that answers exactly the calls viewer.js documents:
the page and its files (no auth), the job's status body, frames by range
(``viewer.data.FrameIndex``), the track timeline (``viewer.data.timeline_of``), media tokens
(``pose_pipeline.media_tokens``) and the video with Range support. With a token, every
``/v1/jobs/...`` call but the page needs ``Authorization: Bearer <token>``; the video also
takes a valid media token instead. Each request is recorded (path, query, whether it had the
bearer header) for the test to check what the page sent.
"""

from __future__ import annotations

import argparse
import hmac
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from real_jobs import RealJob
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from pose_pipeline import viewer
from pose_pipeline.media_tokens import MediaTokens
from pose_pipeline.video import probe
from pose_pipeline.viewer.data import FrameIndex, timeline_of

JOB_ID = "0123456789abcdef0123456789abcdef"


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: str
    bearer: bool  # an Authorization header with the right token
    authorization: bool  # any Authorization header
    range: str | None  # the Range header (the <video> element's requests)
    status: int  # as the handler answered (a FileResponse turns a range into a 206 later)


@dataclass
class ViewerHarness:
    job: RealJob
    token: str | None = None
    #: Send the engine as the result header's object (else its name, as the status body does).
    engine_object: bool = False
    media_ttl_s: float = 3600.0
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.frames = FrameIndex.build(self.job.result_path)
        self.timeline = timeline_of(self.job.result_path)
        self.media = MediaTokens.from_bearer_tokens([self.token] if self.token else [], ttl_s=self.media_ttl_s)
        self.app = Starlette(routes=[
            Route("/v1/jobs/{job_id}/viewer", self.page),
            Route("/v1/viewer/{name}", self.asset),
            Route("/v1/jobs/{job_id}", self.status),
            Route("/v1/jobs/{job_id}/frames", self.frames_page),
            Route("/v1/jobs/{job_id}/tracks", self.tracks),
            Route("/v1/jobs/{job_id}/media-token", self.media_token, methods=["POST"]),
            Route("/v1/jobs/{job_id}/video", self.video),
        ])

    # --- the endpoints ---

    async def page(self, request: Request) -> Response:
        return self._answer(request, self._known(request) or Response(viewer.asset(viewer.PAGE),
                                                                      media_type=viewer.ASSETS[viewer.PAGE]))

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in viewer.ASSETS:
            return self._answer(request, _error(404, "not_found", f"no file {name}"))
        return self._answer(request, Response(viewer.asset(name), media_type=viewer.ASSETS[name]))

    async def status(self, request: Request) -> Response:
        return self._answer(request, self._refused(request) or JSONResponse(self._status_body()))

    async def frames_page(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused:
            return self._answer(request, refused)
        try:
            start, count = int(request.query_params["start"]), int(request.query_params["count"])
            body = self.frames.page(start, count)
        except (KeyError, ValueError) as exc:
            return self._answer(request, _error(422, "invalid_option", f"start and count: {exc}"))
        return self._answer(request, JSONResponse(body))

    async def tracks(self, request: Request) -> Response:
        return self._answer(request, self._refused(request) or JSONResponse(self.timeline))

    async def media_token(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused:
            return self._answer(request, refused)
        return self._answer(request, JSONResponse(self.media.issue(JOB_ID).to_dict()))

    async def video(self, request: Request) -> Response:
        media_token = request.query_params.get("media_token")
        if media_token is not None and self._known(request) is None:
            if not self.media.verify(media_token, JOB_ID):
                return self._answer(request, _error(401, "unauthorized", "the media token is not valid"))
        else:
            refused = self._refused(request)
            if refused:
                return self._answer(request, refused)
        return self._answer(request, FileResponse(self.job.video, media_type="video/mp4"))

    # --- helpers ---

    def _status_body(self) -> dict[str, Any]:
        header = self.job.result.header
        return {
            "job_id": JOB_ID, "state": "succeeded", "stage": "done", "filename": self.job.video.name,
            "engine": header.engine.to_dict() if self.engine_object else header.engine.name,
            "video": probe(self.job.video).to_dict(), "processing": header.processing.to_dict(),
            "timings": {"queued_s": 0.02, "running_s": 3.1},
            "progress": {"frames_done": self.frames.total, "frames_total": self.frames.total, "fraction": 1.0},
            "error": None, "expires_at": time.time() + 86400,
        }

    def _known(self, request: Request) -> Response | None:
        if request.path_params.get("job_id") != JOB_ID:
            return _error(404, "job_not_found", "no such job")
        return None

    def _bearer(self, request: Request) -> bool:
        given = request.headers.get("authorization", "")
        return self.token is not None and hmac.compare_digest(given, f"Bearer {self.token}")

    def _refused(self, request: Request) -> Response | None:
        if self.token is not None and not self._bearer(request):
            return _error(401, "unauthorized", "send Authorization: Bearer <token>")
        return self._known(request)

    def _answer(self, request: Request, response: Response) -> Response:
        self.seen.append(Seen(request.method, request.url.path, request.url.query, self._bearer(request),
                              "authorization" in request.headers, request.headers.get("range"),
                              response.status_code))
        return response

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Run the app on a free loopback port in a thread; yields the viewer's URL."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the harness did not start")
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}/v1/jobs/{JOB_ID}/viewer"
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


if __name__ == "__main__":
    from real_jobs import bikes_window

    parser = argparse.ArgumentParser(description="serve the viewer of a real job")
    parser.add_argument("--token", help="require this bearer token")
    args = parser.parse_args()
    harness = ViewerHarness(bikes_window(), token=args.token)
    with harness.serve() as url:
        print(f"viewer: {url}  (Ctrl-C stops)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
