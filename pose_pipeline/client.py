"""A small Python client for the HTTP API (what ``pose-pipeline submit`` uses).

    client = Client("http://127.0.0.1:8000")
    job = client.submit("video.mp4", fps=15)
    job = client.wait(job.job_id, progress=print)
    client.download(job.job_id, "result.json")

Answers are the server's own models (pose_pipeline/api/schemas.py); an error response raises the
``PipelineError`` subclass of its code (pose_pipeline/errors.py).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx

from .errors import UploadConflict, from_dict
from .files import atomic_write
from .api.schemas import JobList, JobView, UploadView

_UPLOAD_PIECE = 1024 * 1024
#: Files larger than this go up in parts (bounded memory on the server, resumable).
PART_BYTES = 8 * 1024 * 1024
_PART_ATTEMPTS = 3


class Client:
    """``http``: an ``httpx.Client`` to send the requests with instead of one made from
    ``base_url``, ``token`` and ``timeout_s`` (for example Starlette's ``TestClient``)."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", token: str | None = None,
                 timeout_s: float = 60.0, *, http: httpx.Client | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = http or httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)
        self._owned = http is None

    def close(self) -> None:
        if self._owned:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, video: str | os.PathLike[str], *, part_bytes: int = PART_BYTES,
               progress: Callable[[int, int], None] | None = None, **options: Any) -> JobView:
        """Upload a video and start a job; returns the job's status. A file larger than
        ``part_bytes`` is sent in parts (``upload_parts``; ``progress(bytes sent, size)``
        after each part)."""
        path = Path(video)
        params = {k: v for k, v in options.items() if v is not None}
        for name in ("formats", "include"):
            if name in params and not isinstance(params[name], str):
                params[name] = ",".join(params[name])
        if isinstance(params.get("smooth"), dict):  # an object of parameters travels as JSON text
            params["smooth"] = json.dumps(params["smooth"])
        if path.stat().st_size > part_bytes:
            upload = self.upload_parts(path, part_bytes, progress)
            return JobView.model_validate(_json(self._http.post("/v1/jobs", params={**params, "upload": upload.id})))
        with open(path, "rb") as fh:
            # Its length up front: a server that cannot take it answers 413 before the body.
            response = self._http.post("/v1/jobs", params={**params, "filename": path.name}, content=_pieces(fh),
                                       headers={"Content-Type": "application/octet-stream",
                                                "Content-Length": str(path.stat().st_size)})
        return JobView.model_validate(_json(response))

    def upload_parts(self, video: str | os.PathLike[str], part_bytes: int = PART_BYTES,
                     progress: Callable[[int, int], None] | None = None) -> UploadView:
        """Send a file in parts of at most ``part_bytes`` (or the server's maximum); a part
        that fails on the way is sent again from where the server says the upload ends.
        Returns the upload's status; start a job with ``?upload=<id>``."""
        path = Path(video)
        size = path.stat().st_size
        upload = UploadView.model_validate(
            _json(self._http.post("/v1/uploads", params={"filename": path.name, "size": size})))
        part_bytes = min(part_bytes, upload.max_part_bytes)
        url, failures = f"/v1/uploads/{upload.id}", 0
        with open(path, "rb") as fh:
            while upload.offset < size:
                fh.seek(upload.offset)
                part = fh.read(part_bytes)
                try:
                    upload = UploadView.model_validate(_json(self._http.put(
                        url, params={"offset": upload.offset}, content=part,
                        headers={"Content-Type": "application/octet-stream"})))
                    failures = 0
                    if progress:
                        progress(upload.offset, size)
                except (httpx.TransportError, UploadConflict):
                    # A part cut on the way is dropped whole (the server may take a moment to
                    # notice): ask where the upload ends and go on from there.
                    failures += 1
                    if failures >= _PART_ATTEMPTS:
                        raise
                    time.sleep(0.5 * failures)
                    upload = UploadView.model_validate(_json(self._http.get(url)))
        return upload

    def status(self, job_id: str) -> JobView:
        return JobView.model_validate(_json(self._http.get(f"/v1/jobs/{job_id}")))

    def jobs(self, *, limit: int | None = None, state: str | Iterable[str] | None = None,
             cursor: str | None = None) -> JobList:
        """One page of the job list, newest first: ``state`` one state or several; pass the
        page's ``next_cursor`` as ``cursor`` for the next one."""
        if state is not None and not isinstance(state, str):
            state = ",".join(state)
        params = {k: v for k, v in {"limit": limit, "state": state, "cursor": cursor}.items() if v is not None}
        return JobList.model_validate(_json(self._http.get("/v1/jobs", params=params)))

    def iter_jobs(self, *, state: str | Iterable[str] | None = None, page_size: int = 100) -> Iterator[JobView]:
        """Every job (in ``state``), newest first, a page at a time."""
        cursor = None
        while True:
            page = self.jobs(limit=page_size, state=state, cursor=cursor)
            yield from page.jobs
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def events(self, job_id: str, *, attempts: int = 5) -> Iterator[JobView]:
        """Status snapshots as the job progresses (Server-Sent Events), until it ends. A stream
        the server ends first (it does every ``jobs.events_stream_s``, before a proxy cuts it)
        or a dropped connection is resumed from the last event (``Last-Event-ID``), after the
        server's ``retry:`` delay; ``attempts`` connections failing in a row raise."""
        last_id: str | None = None
        retry_s, failures = 1.0, 0
        while True:
            try:
                for kind, value in self._stream(job_id, last_id):
                    if kind == "retry":
                        retry_s = int(value) / 1000
                        continue
                    if kind == "id":
                        last_id = value
                        continue
                    failures = 0
                    view = JobView.model_validate(json.loads(value))
                    yield view
                    if view.state.terminal:
                        return
            except httpx.TransportError:
                failures += 1
                if failures >= attempts:
                    raise
            else:  # the server ended the stream: the job may have ended meanwhile
                status = self.status(job_id)
                if status.state.terminal:
                    yield status
                    return
            time.sleep(retry_s)

    def _stream(self, job_id: str, last_id: str | None) -> Iterator[tuple[str, str]]:
        """One event stream's fields, in order: ("retry", ms), ("id", id), ("data", JSON)."""
        headers = {"Last-Event-ID": last_id} if last_id else {}
        with self._http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=None) as response:
            if response.status_code != 200:
                response.read()
                _json(response)
            for line in response.iter_lines():
                name, _, value = line.partition(": ")
                if name in ("retry", "id", "data") and value:
                    yield name, value

    def wait(self, job_id: str, progress: Callable[[JobView], None] | None = None) -> JobView:
        """Follow the job until it ends; raise its error if it failed or was cancelled."""
        status = self.status(job_id)
        for status in self.events(job_id):
            if progress:
                progress(status)
        if status.state in ("failed", "cancelled"):
            error = status.error.model_dump() if status.error else {"code": "cancelled",
                                                                    "message": "the job was cancelled"}
            raise from_dict(error)
        return status

    def download(self, job_id: str, dest: str | os.PathLike[str], fmt: str | None = None) -> Path:
        """Write a result file to ``dest``; ``fmt`` by default from its suffix (``.npz``, the
        overlay video ``.mp4``, else ``json``)."""
        dest = Path(dest)
        fmt = fmt or {".npz": "npz", ".mp4": "mp4"}.get(dest.suffix, "json")
        with self._http.stream("GET", f"/v1/jobs/{job_id}/result", params={"format": fmt}) as response:
            if response.status_code != 200:
                response.read()
                _json(response)
            with atomic_write(dest) as out:
                for piece in response.iter_bytes(_UPLOAD_PIECE):
                    out.write(piece)
        return dest

    def cancel(self, job_id: str) -> JobView:
        return JobView.model_validate(_json(self._http.delete(f"/v1/jobs/{job_id}")))


def _pieces(fh: IO[bytes]) -> Iterator[bytes]:
    while piece := fh.read(_UPLOAD_PIECE):
        yield piece


def _json(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a success; the typed error of an error response."""
    try:
        body = response.json()
    except ValueError:
        body = {"error": {"code": "http_error", "message": response.text[:500]}}
    if response.is_error:
        raise from_dict(body.get("error", {}), response.status_code)
    return dict(body)
