"""The viewer page in a real browser: Debian's Chromium (``/usr/bin/chromium``), headless,
driven by Playwright from PyPI (a dev dependency; its own browser downloads are never used),
and checks in the pixels of its screenshots (the ``browser`` fixture, tests/conftest.py).

``ViewerPage`` opens a viewer URL and records what the page logged and requested; ``check_box``
finds a person's box of the result on the screenshot, in its track's colour, where the result
says it is (solid for a detection, dashed for a prediction).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import av
import numpy as np

from pose_pipeline.render.palette import track_color
from pose_pipeline.results.schema import TrackingResult

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


class ViewerPage:
    """A browser page on a viewer URL, with its console errors, requests and responses."""

    def __init__(self, browser: Any, url: str, init_script: str | None = None) -> None:
        self.context = browser.new_context(viewport={"width": 1100, "height": 800})
        if init_script:
            self.context.add_init_script(init_script)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[Any] = []  # playwright Request objects, in order
        self.responses: list[Any] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("request", lambda r: self.requests.append(r))
        self.page.on("response", lambda r: self.responses.append(r))
        self.page.goto(url)

    @property
    def urls(self) -> list[str]:
        return [request.url for request in self.requests]

    def wait_until(self, expression: str, timeout_ms: int = 15000) -> None:
        """Until the JavaScript ``expression`` is true. Passed as a function: the page's
        Content-Security-Policy forbids evaluating strings (Playwright's other way)."""
        self.page.wait_for_function(f"() => ({expression})", timeout=timeout_ms)

    def wait_frame(self, index: int, timeout_ms: int = 30000) -> None:
        """Until the overlay shows result frame ``index`` and the video has that picture."""
        self.wait_until(f"document.body.dataset.frame === '{index}'", timeout_ms)
        self.wait_until("!document.getElementById('video').seeking && "
                        "document.getElementById('video').readyState >= 2", timeout_ms)
        self.page.wait_for_timeout(150)  # the compositor shows the picture after the seek

    def shown_frame(self) -> str:
        return str(self.page.evaluate("document.body.dataset.frame"))

    def current_time(self) -> float:
        return float(self.page.evaluate("document.getElementById('video').currentTime"))

    def screenshot(self) -> np.ndarray:
        with tempfile.NamedTemporaryFile(suffix=".png") as png:
            self.page.screenshot(path=png.name)
            with av.open(png.name) as container:  # PyAV reads PNG: no imaging library needed
                return next(container.decode(video=0)).to_ndarray(format="rgb24")

    def stage(self) -> dict[str, float]:
        box = self.page.locator("#stage").bounding_box()
        assert box is not None
        return box

    def shown_picture(self, size: tuple[int, int]) -> np.ndarray:
        """The video's current picture as the page has it, at ``size`` (width, height)."""
        width, height = size
        data = self.page.evaluate(f"""(() => {{
            const v = document.getElementById('video'), c = document.createElement('canvas');
            c.width = {width}; c.height = {height};
            const ctx = c.getContext('2d');
            ctx.drawImage(v, 0, 0, {width}, {height});
            return Array.from(ctx.getImageData(0, 0, {width}, {height}).data);
        }})()""")
        return np.array(data, dtype=np.uint8).reshape(height, width, 4)[..., :3]

    def close(self) -> None:
        self.context.close()


def box_edge(shot: np.ndarray, stage: dict[str, float], source_width: int, bbox: Any, color: tuple[int, int, int],
             outside: int = 0) -> np.ndarray:
    """Whether each pixel down the middle third of the box's left edge (or ``outside`` pixels
    left of it) has the track's colour, in the screenshot."""
    scale = stage["width"] / source_width
    x1, y1, _, y2 = (float(v) for v in bbox)
    column = round(stage["x"]) + round(x1 * scale) - outside  # the page draws boxes on whole pixels
    rows = np.arange(int(stage["y"] + (y1 + (y2 - y1) / 3) * scale), int(stage["y"] + (y1 + 2 * (y2 - y1) / 3) * scale))
    best: np.ndarray | None = None
    for dx in (-1, 0, 1):  # the stage's own position may be off by a fraction of a pixel
        hits = (np.abs(shot[rows, column + dx].astype(int) - color) <= 3).all(axis=1)
        best = hits if best is None or hits.mean() > best.mean() else best
    assert best is not None and len(best) > 3, "the box is too small to check"
    return best


def check_box(view: ViewerPage, result: TrackingResult, index: int, track_id: int) -> None:
    """The box of ``track_id`` in result frame ``index`` is drawn on the video where the
    result says, in the track's colour: solid if detected, dashed if predicted; and not
    beside it."""
    (person,) = [p for p in result.frames[index].people if p.track_id == track_id]
    shot, stage = view.screenshot(), view.stage()
    color = track_color(person.track_id)
    width = result.header.video.width
    edge = box_edge(shot, stage, width, person.bbox, color)
    if person.detected:
        assert edge.mean() > 0.95, (index, edge.mean())
    else:  # dashed
        assert 0.3 < edge.mean() < 0.7, (index, edge.mean())
    assert box_edge(shot, stage, width, person.bbox, color, outside=6).mean() < 0.05, index


def check_picture(view: ViewerPage, source_frames: np.ndarray | Mapping[int, np.ndarray], index: int) -> None:
    """The video shows the source frame of result frame ``index``, not a neighbour's.
    ``source_frames``: the result's frames decoded at the source size, all of them, or those
    around ``index`` by result frame index."""
    pictures = dict(enumerate(source_frames)) if isinstance(source_frames, np.ndarray) else source_frames
    height, width = pictures[index].shape[:2]
    small = (width // 4, height // 4)
    shown = view.shown_picture(small).astype(float)
    near = [k for k in range(index - 2, index + 3) if k in pictures]
    differences = {k: np.abs(quarter(pictures[k], small) - shown).mean() for k in near}
    assert len(near) > 1 and min(differences, key=lambda k: differences[k]) == index, differences


def quarter(image: np.ndarray, small: tuple[int, int]) -> np.ndarray:
    width, height = small
    return image[:height * 4, :width * 4].reshape(height, 4, width, 4, 3).mean(axis=(1, 3))
