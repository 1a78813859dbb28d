"""The viewer page of a job (``GET /v1/jobs/{id}/viewer``): static files, no build step, no
CDN, no external fonts (the service may run offline), and what the service needs to serve it.

The page (``viewer.html``) loads its scripts and stylesheet relative to its own address:
``../../viewer/<name>`` from ``{api}/v1/jobs/{id}/viewer`` is ``{api}/v1/viewer/<name>``.
Serve ``PAGE`` at the first address and every name of ``ASSETS`` at the second, with its
media type, without authentication: they hold no job data, and a browser cannot send a bearer
token when it loads a page or a script. The page reads everything else through the API, with
the token it asks for (viewer.js documents the endpoints it calls).

``data`` has what those endpoints send (frames by range, the track timeline); the media
tokens for the <video> element are in ``pose_pipeline.api.media_tokens``.
"""

from __future__ import annotations

from importlib import resources

PAGE = "viewer.html"
#: Every file of the page, with its media type (module scripts need a JavaScript type).
ASSETS: dict[str, str] = {
    "viewer.html": "text/html; charset=utf-8",
    "viewer.css": "text/css; charset=utf-8",
    "viewer.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "frames.js": "text/javascript; charset=utf-8",
    "overlay.js": "text/javascript; charset=utf-8",
    "timeline.js": "text/javascript; charset=utf-8",
}


def asset(name: str) -> bytes:
    """The bytes of one file of ``ASSETS``; ``KeyError`` for any other name (a 404)."""
    if name not in ASSETS:
        raise KeyError(name)
    return resources.files(__name__).joinpath(name).read_bytes()
