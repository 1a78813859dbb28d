"""The viewer page in a real browser: Debian's Chromium, headless, driven by Playwright (from
PyPI, a dev dependency; its own browser downloads are never used), against the harness of
tests/viewer_harness.py serving a real job (bikes.mp4, seconds 1.0-3.6, the blazepose engine:
tests/real_jobs.py).

Checked in the screenshots' pixels: each box of the result is on the video where the result
says, in its track's colour (solid for a detection, dashed for a prediction), and the
picture the video shows is the source frame of the result frame drawn. Also: frame stepping
(keys and buttons), the timeline (labels and bars), no console errors, no request outside
the service, frames loaded by range; with auth on, the token asked once and never in a URL,
the video loaded with a media token.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from real_jobs import bikes_window
from viewer_harness import JOB_ID, ViewerHarness

from pose_pipeline.overlay_style import BONES, track_color
from pose_pipeline.video import ChunkDecoder, DecodeOptions, probe

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is absent: apt-get install chromium", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install playwright "
                               "(its browser downloads are not needed)")

pytestmark = pytest.mark.slow  # a browser, a few seconds each

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SOURCE = (640, 272)
TOKEN = "viewer-test-token-7f3a"


@pytest.fixture(scope="module")
def job():
    return bikes_window()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def source_frames(job) -> np.ndarray:
    """The window's source frames at the source size (what the <video> shows): (65, 272, 640, 3)."""
    options = DecodeOptions(start_s=job.options.start_s, end_s=job.options.end_s)
    with ChunkDecoder(job.video, probe(job.video), options) as decoder:
        return np.concatenate([chunk.frames for chunk in decoder])


class Page:
    """A browser page on the harness, with what it logged and requested."""

    def __init__(self, browser, url: str, init_script: str | None = None) -> None:
        self.context = browser.new_context(viewport={"width": 1100, "height": 800})
        if init_script:
            self.context.add_init_script(init_script)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("request", lambda r: self.urls.append(r.url))
        self.page.goto(url)

    def wait_frame(self, index: int) -> None:
        """Until the overlay shows result frame ``index`` and the video has that picture."""
        self.page.wait_for_function(f"document.body.dataset.frame === '{index}'", timeout=15000)
        self.page.wait_for_function("(() => { const v = document.getElementById('video');"
                                    " return !v.seeking && v.readyState >= 2; })()", timeout=15000)
        self.page.wait_for_timeout(150)  # the compositor shows the picture after the seek

    def current_time(self) -> float:
        return self.page.evaluate("document.getElementById('video').currentTime")

    def screenshot(self) -> np.ndarray:
        with tempfile.NamedTemporaryFile(suffix=".png") as png:
            self.page.screenshot(path=png.name)
            with av.open(png.name) as container:  # PyAV reads PNG: no imaging library needed
                return next(container.decode(video=0)).to_ndarray(format="rgb24")

    def stage(self) -> dict:
        return self.page.locator("#stage").bounding_box()

    def shown_picture(self) -> np.ndarray:
        """The video's current picture as the page has it, at a quarter of the source size."""
        data = self.page.evaluate("""(() => {
            const v = document.getElementById('video'), c = document.createElement('canvas');
            c.width = 160; c.height = 68;
            const ctx = c.getContext('2d');
            ctx.drawImage(v, 0, 0, 160, 68);
            return Array.from(ctx.getImageData(0, 0, 160, 68).data);
        })()""")
        return np.array(data, dtype=np.uint8).reshape(68, 160, 4)[..., :3]

    def close(self) -> None:
        self.context.close()


def quarter(image: np.ndarray) -> np.ndarray:
    return image.reshape(68, 4, 160, 4, 3).mean(axis=(1, 3))


def box_edge(shot: np.ndarray, stage: dict, bbox, color, outside: int = 0) -> np.ndarray:
    """Whether each pixel down the middle third of the box's left edge (or ``outside`` pixels
    left of it) has the track's colour, in the screenshot."""
    scale = stage["width"] / SOURCE[0]
    x1, y1, _, y2 = bbox
    column = round(stage["x"]) + round(x1 * scale) - outside  # the page draws boxes on whole pixels
    rows = np.arange(int(stage["y"] + (y1 + (y2 - y1) / 3) * scale), int(stage["y"] + (y1 + 2 * (y2 - y1) / 3) * scale))
    best = None
    for dx in (-1, 0, 1):  # the stage's own position may be off by a fraction of a pixel
        hits = (np.abs(shot[rows, column + dx].astype(int) - color) <= 3).all(axis=1)
        best = hits if best is None or hits.mean() > best.mean() else best
    return best


def check_box(view: Page, job, index: int) -> None:
    (person,) = job.result.frames[index].people
    shot, stage = view.screenshot(), view.stage()
    color = track_color(person.track_id)
    edge = box_edge(shot, stage, person.bbox, color)
    if person.detected:
        assert edge.mean() > 0.95, (index, edge.mean())
    else:  # dashed
        assert 0.3 < edge.mean() < 0.7, (index, edge.mean())
    assert box_edge(shot, stage, person.bbox, color, outside=6).mean() < 0.05


def check_picture(view: Page, source_frames: np.ndarray, index: int) -> None:
    """The video shows the source frame of result frame ``index``, not a neighbour."""
    shown = view.shown_picture().astype(float)
    near = range(max(index - 2, 0), min(index + 3, len(source_frames)))
    differences = {k: np.abs(quarter(source_frames[k]) - shown).mean() for k in near}
    assert min(differences, key=differences.get) == index, differences


def check_shown_frame_matches_time(view: Page, job) -> None:
    """The frame drawn is the last result frame at or before the video's time (+ half a frame)."""
    view.page.wait_for_timeout(300)
    t = view.current_time()
    expected = max(k for k, f in enumerate(job.result.frames) if f.time_s <= t + 0.5 / 25)
    assert view.page.evaluate("document.body.dataset.frame") == str(expected), t


def test_the_viewer_draws_the_result_on_the_video_in_sync(browser, job, source_frames):
    harness = ViewerHarness(job)
    frames, tracks = job.result.frames, {t.track_id: t for t in job.result.tracks}
    with harness.serve() as url:
        view = Page(browser, url)
        try:
            view.wait_frame(0)  # the first result frame, drawn (nobody in it)
            meta = view.page.locator("#meta").inner_text()
            assert all(text in meta for text in ("blazepose", "640x272", "320x136", "25.00 fps", "65"))

            # a track's label: to its first frame, the video at that frame's time
            view.page.click('button[data-track="1"]')
            view.wait_frame(tracks[1].first_frame)
            assert view.current_time() == pytest.approx(frames[5].time_s + 0.25 / 25, abs=0.002)
            check_box(view, job, 5)
            check_picture(view, source_frames, 5)

            # one frame on, with the arrow key, then the buttons
            view.page.keyboard.press("ArrowRight")
            view.wait_frame(6)
            assert view.current_time() == pytest.approx(frames[6].time_s + 0.01, abs=0.002)
            check_box(view, job, 6)
            check_picture(view, source_frames, 6)
            view.page.click("#next")
            view.wait_frame(7)
            view.page.click("#prev")
            view.page.keyboard.press("ArrowLeft")
            view.wait_frame(5)

            # the other track, and a bar of the timeline: the frame under the pointer
            view.page.click('button[data-track="2"]')
            view.wait_frame(tracks[2].first_frame)
            assert view.current_time() == pytest.approx(frames[51].time_s + 0.01, abs=0.002)
            check_box(view, job, 51)
            bars = view.page.locator(".timeline-bars").bounding_box()
            view.page.mouse.click(bars["x"] + bars["width"] * 20.5 / 65, bars["y"] + 8)  # track 1's row
            view.wait_frame(20)
            assert not frames[20].people[0].detected
            check_box(view, job, 20)  # a prediction: dashed
            check_picture(view, source_frames, 20)

            # play and pause: the overlay follows the video
            played_from = view.current_time()
            view.page.click("#play")
            view.page.wait_for_function("Number(document.body.dataset.frame) >= 24", timeout=15000)
            view.page.click("#play")
            view.page.wait_for_function("document.getElementById('video').paused", timeout=5000)
            assert view.current_time() > played_from + 0.1
            check_shown_frame_matches_time(view, job)

            # the same colours and bones as the MP4 (one formula, two implementations)
            shared = view.page.evaluate("""(async () => {
                const overlay = await import('../../viewer/overlay.js');
                const ids = Array.from({length: 400}, (_, k) => k - 50);
                return {colors: ids.map(overlay.trackColor), bones: overlay.BONES};
            })()""")
            assert shared["colors"] == [list(track_color(k - 50)) for k in range(400)]
            assert shared["bones"] == {name: [list(b) for b in bones] for name, bones in BONES.items()}

            assert view.errors == []
            origin = url.split("/v1/")[0]
            assert all(u.startswith(origin) for u in view.urls), [u for u in view.urls if not u.startswith(origin)]
            pages = [s.query for s in harness.seen if s.path.endswith("/frames")]
            assert pages == ["start=0&count=256"]  # by range: one page holds this short result
        finally:
            view.close()


def test_with_auth_the_token_is_asked_once_and_never_in_a_url(browser, job):
    harness = ViewerHarness(job, token=TOKEN, engine_object=True)
    with harness.serve() as url:
        view = Page(browser, url)
        try:
            view.page.wait_for_selector("#auth", state="visible", timeout=15000)
            view.page.fill("#token", TOKEN)
            view.page.click("#auth button")
            view.wait_frame(0)
            view.page.click('button[data-track="1"]')
            view.wait_frame(5)
            check_box(view, job, 5)

            api = [s for s in harness.seen if "/v1/jobs/" in s.path and not s.path.endswith(("/viewer", "/video"))]
            assert api[0].status == 401 and not api[0].authorization  # the first look, before the token
            assert all(s.bearer and s.status == 200 for s in api[1:]) and len(api) >= 4
            videos = [s for s in harness.seen if s.path.endswith("/video")]
            assert videos and all(s.query.startswith("media_token=") and not s.authorization and s.status == 200
                                  for s in videos)
            assert any(s.range for s in videos)  # the element reads by range
            assert not any(TOKEN in u for u in view.urls)
            # the console shows the refused first look, nothing else
            assert view.errors and all("401" in e for e in view.errors), view.errors

            # kept for this tab: a reload needs no form
            view.page.reload()
            view.wait_frame(0)
            assert view.page.locator("#auth").is_hidden()
        finally:
            view.close()

        base = url.rsplit("/viewer", 1)[0]
        with httpx.Client() as client:
            assert client.get(f"{base}/video").status_code == 401
            assert client.get(f"{base}/frames?start=0&count=1").status_code == 401
            assert client.post(f"{base}/media-token").status_code == 401
            other = harness.media.issue("f" * 32).token  # another job's token
            assert client.get(f"{base}/video", params={"media_token": other}).status_code == 401
            mine = client.post(f"{base}/media-token", headers={"Authorization": f"Bearer {TOKEN}"}).json()["token"]
            ranged = client.get(f"{base}/video", params={"media_token": mine}, headers={"Range": "bytes=0-99"})
            assert ranged.status_code == 206 and len(ranged.content) == 100
            assert client.get(url.replace(JOB_ID, "e" * 32)).status_code == 404


def test_without_request_video_frame_callback_playback_still_draws(browser, job):
    """Browsers without requestVideoFrameCallback: the page follows currentTime each animation
    frame while playing, and on timeupdate and seeked."""
    no_callback = "delete HTMLVideoElement.prototype.requestVideoFrameCallback;"
    with ViewerHarness(job).serve() as url:
        view = Page(browser, url, init_script=no_callback)
        try:
            view.wait_frame(0)
            assert view.page.evaluate("!('requestVideoFrameCallback' in HTMLVideoElement.prototype)")
            view.page.click("#play")
            view.page.wait_for_function("Number(document.body.dataset.frame) >= 12", timeout=15000)
            view.page.click("#play")
            view.page.wait_for_function("document.getElementById('video').paused", timeout=5000)
            check_shown_frame_matches_time(view, job)
            paused_at = int(view.page.evaluate("document.body.dataset.frame"))
            view.page.keyboard.press("ArrowRight")
            view.wait_frame(paused_at + 1)
            assert view.current_time() == pytest.approx(job.result.frames[paused_at + 1].time_s + 0.01, abs=0.002)
            assert view.errors == []
        finally:
            view.close()
