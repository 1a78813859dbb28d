// The viewer of one job: the uploaded video with the result drawn over it in sync, a track
// timeline, frame stepping and the job's metadata. Static files, no build step, no network
// access but the service's own API.
//
// ---- The API contract (what the service answers: pose_pipeline/api.py, docs/api.md#the-viewer) ----
//
// The page is served at {api}/v1/jobs/{id}/viewer and finds {api} and {id} in its own URL. Its
// files are at {api}/v1/viewer/{name} (pose_pipeline/viewer/__init__.py: ASSETS), loaded
// relative to the page. The page and its files need no authentication; every call below
// sends `Authorization: Bearer <token>` when the user gave a token.
//
// GET  {api}/v1/jobs/{id}
//      The job's status body (docs/api.md), of which the page reads:
//        state        "queued" | "running" (the page shows progress.fraction and asks again
//                     every 2 s) | "succeeded" (the page shows it) | "failed" | "cancelled"
//                     (the page shows error.message)
//        engine       the engine's name (a string, as today), or the result header's engine
//                     object {name, version, joint_format}; with only the name, the bones
//                     are chosen by the joint count (33: blazepose33, 44: hmr2_openpose25_extra19)
//        video        {display_width, display_height (after rotation), fps, codec, duration_s};
//                     width/height stand in for display_* when those are absent: they must then
//                     be the size after rotation (the result's video.width/height). Boxes and
//                     joints are in these pixels.
//        processing   the result header's processing {fps (null: every frame), max_side,
//                     frame_width, frame_height, start_s, end_s}; optional, fps is used to find
//                     a frame's page (video.fps when absent)
//        timings      {name: seconds}, shown as they are (queued_s, running_s, ...)
//        filename, job_id, error, progress: shown when present
// GET  {api}/v1/jobs/{id}/frames?start=S&count=C
//      -> {"start": S, "count": n, "total": F, "frames": [...]}: frames S .. S+n-1, each
//      exactly as in the result JSON's frames[] ({index, source_index, time, people: [{track_id,
//      bbox, score, detected, joints_2d?, joints_confidence?, ...}]}). n = min(C, F - S); the
//      page asks for C = 256 and needs all of them (a server may cap C, not below 256).
// GET  {api}/v1/jobs/{id}/tracks
//      -> {"total_frames": F, "fps": <processed fps>, "tracks": [{"track_id", "first_frame",
//      "last_frame", "frames_detected", "frames_predicted", "segments": [[first, last], ...]}]}:
//      segments are the runs of consecutive frame indices in which the track appears.
// POST {api}/v1/jobs/{id}/media-token   (with the bearer header; also answered without auth)
//      -> {"token": "...", "expires_at": <Unix seconds>}: a token good only for this job's video,
//      short-lived; the page asks for a new one at 80% of its life (and after a video error).
//      A 404 or 405 here makes the page use the plain video URL (a service without auth).
// GET  {api}/v1/jobs/{id}/video?media_token=...
//      -> the uploaded video, with HTTP Range support (206 answers: the <video> element seeks
//      by range); accepts the media token instead of the bearer header.
//
// Errors: the service's JSON error bodies; a 401 on the job makes the page ask for the token
// (kept in this tab's sessionStorage, never put in a URL).
//
// ---- Sync ----
// A result frame has the source time of the picture the engine saw (`time`, seconds from
// the start of the video stream). Each picture the browser presents
// (requestVideoFrameCallback's mediaTime, after a seek too; else currentTime on timeupdate,
// seeked and, while playing, each animation frame) shows the last result frame whose time is at most that time plus half
// a source frame; nothing before the first result frame or after the last one. Stepping
// seeks to a result frame's time plus a quarter of a source frame (inside that picture).

import { Api } from "./api.js";
import { FrameCache } from "./frames.js";
import { drawFrame } from "./overlay.js";
import { Timeline } from "./timeline.js";

const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);

class Viewer {
  constructor(api) {
    this.api = api;
    this.video = $("video");
    this.canvas = $("overlay");
    this.shown = null; // index of the result frame drawn, or null
    this.pinned = null; // a frame we seeked to: shown until playback or a seek of the user's
    this.ourSeek = false;
    this.restoring = null; // {time, paused} while the video reloads with a new media token
    this.pictureTime = null; // mediaTime of the last picture presented (requestVideoFrameCallback)
    this.started = false;
  }

  async start() {
    let job;
    try {
      job = await this.api.job();
    } catch (error) {
      if (error.status === 401) return this.askToken(this.api.token ? "That token was refused." : "");
      return this.fail(`Cannot read the job: ${error.message}`);
    }
    $("auth").hidden = true;
    this.showJob(job);
    if (job.state === "queued" || job.state === "running") {
      const fraction = job.progress && job.progress.fraction;
      status(`The job is ${job.state}${fraction != null ? ` (${Math.round(fraction * 100)}%)` : ""}; this page ` +
        "shows it when it has succeeded.");
      setTimeout(() => this.start(), POLL_MS);
      return;
    }
    if (job.state !== "succeeded") {
      return this.fail(`The job ${job.state}${job.error ? `: ${job.error.message}` : ""}.`);
    }
    try {
      await this.open(job);
    } catch (error) {
      this.fail(`Cannot load the result: ${error.message}`);
    }
  }

  askToken(message) {
    const form = $("auth");
    form.hidden = false;
    $("auth-error").textContent = message;
    status("This service needs a token.");
    $("token").focus();
    form.onsubmit = (event) => {
      event.preventDefault();
      this.api.setToken($("token").value.trim());
      $("token").value = "";
      this.start();
    };
  }

  async open(job) {
    const engine = job.engine;
    this.jointFormat = engine && typeof engine === "object" ? engine.joint_format : null;
    const video = job.video || {};
    this.size = [video.display_width || video.width, video.display_height || video.height];
    this.sourceFps = video.fps || 30;
    this.fps = (job.processing && job.processing.fps) || this.sourceFps;
    const timeline = await this.api.tracks();
    this.total = timeline.total_frames;
    this.fps = timeline.fps || this.fps;
    this.timeline = new Timeline($("timeline"), {
      tracks: timeline.tracks, totalFrames: this.total, onSeek: (index) => this.seekTo(index),
    });
    this.cache = new FrameCache(this.api, this.total, () => this.refresh());
    await this.cache.load(0);
    setMeta("Frames", `${this.total}`);
    setMeta("Tracks", `${timeline.tracks.length}`);
    $("main").hidden = false;
    this.listen();
    await this.loadVideo();
    status("");
  }

  async loadVideo() {
    const { url, expiresAt } = await this.api.video();
    clearTimeout(this.renewTimer);
    if (expiresAt) {
      const delay = Math.min(Math.max((expiresAt - Date.now()) * 0.8, 5000), 3600 * 1000);
      this.renewTimer = setTimeout(() => this.renew(), delay);
    }
    this.video.src = url;
  }

  // A new media token before the old one expires: same place, same playing state.
  async renew() {
    this.restoring = { time: this.video.currentTime, paused: this.video.paused };
    this.renewedAt = Date.now();
    try {
      await this.loadVideo();
    } catch (error) {
      this.fail(`Cannot renew the video's token: ${error.message}`);
    }
  }

  listen() {
    const video = this.video;
    video.addEventListener("loadedmetadata", () => {
      if (!this.size[0]) this.size = [video.videoWidth, video.videoHeight];
      const stage = $("stage"); // the video's shape, at most 72% of the window's height
      stage.style.aspectRatio = `${this.size[0]} / ${this.size[1]}`;
      stage.style.width = `min(100%, calc(72vh * ${this.size[0] / this.size[1]}))`;
      if (this.restoring) {
        const { time, paused } = this.restoring;
        this.restoring = null;
        video.currentTime = time;
        if (!paused) video.play();
      } else if (!this.started) {
        this.started = true;
        this.seekTo(0);
      }
    });
    video.addEventListener("error", () => {
      const code = video.error ? video.error.code : 0;
      if (code !== 4 && (!this.renewedAt || Date.now() - this.renewedAt > 30000)) {
        this.renew(); // most likely an expired media token
        return;
      }
      this.fail(code === 4 ? "This browser cannot play the video (its codec or container)." :
        `The video failed to load (error ${code}).`);
    });
    video.addEventListener("play", () => { this.pinned = null; $("play").textContent = "Pause"; });
    video.addEventListener("pause", () => { $("play").textContent = "Play"; });
    video.addEventListener("seeking", () => { if (!this.ourSeek) this.pinned = null; });
    // With requestVideoFrameCallback, the picture's own time (mediaTime) is the only clock: a
    // paused video shows the last picture presented, which currentTime may trail by a frame
    // or more (at higher playback rates), so currentTime would draw the frame before it.
    const byPicture = "requestVideoFrameCallback" in HTMLVideoElement.prototype;
    video.addEventListener("seeked", () => { this.ourSeek = false; if (!byPicture) this.refresh(); });
    video.addEventListener("timeupdate", () => { if (!byPicture) this.refresh(); });
    if (byPicture) {
      const onFrame = (now, metadata) => {
        this.pictureTime = metadata.mediaTime;
        this.showTime(metadata.mediaTime);
        video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
    } else {
      const tick = () => {
        if (!video.paused) this.refresh();
        requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    }
    $("play").addEventListener("click", () => (video.paused ? video.play() : video.pause()));
    $("prev").addEventListener("click", () => this.step(-1));
    $("next").addEventListener("click", () => this.step(1));
    document.addEventListener("keydown", (event) => {
      if (event.target instanceof HTMLInputElement || event.altKey || event.ctrlKey || event.metaKey) return;
      if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
        event.preventDefault();
        this.step(event.key === "ArrowRight" ? 1 : -1);
      } else if (event.key === " " && !(event.target instanceof HTMLButtonElement)) {
        event.preventDefault();
        video.paused ? video.play() : video.pause();
      }
    });
    new ResizeObserver(() => this.resize()).observe($("stage"));
  }

  resize() {
    const unit = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(this.canvas.clientWidth * unit);
    this.canvas.height = Math.round(this.canvas.clientHeight * unit);
    this.draw(this.shown);
  }

  refresh() { // also when a page of frames arrives: at the picture shown, if known
    this.showTime(this.pictureTime ?? this.video.currentTime);
  }

  showTime(t) {
    if (!this.cache) return;
    if (this.pinned !== null && (this.video.paused || this.video.seeking)) return this.draw(this.pinned);
    const found = this.cache.locate(t, this.fps, 0.5 / this.sourceFps);
    if (found.missing === undefined) this.draw(found.index);
  }

  async seekTo(index) {
    index = Math.min(Math.max(index, 0), this.total - 1);
    const frame = await this.cache.fetch(index);
    if (!frame) return;
    this.pinned = index;
    this.ourSeek = true;
    this.video.currentTime = frame.time + 0.25 / this.sourceFps;
    this.draw(index);
  }

  step(delta) {
    this.video.pause();
    let base = this.pinned !== null ? this.pinned : this.shown;
    if (base === null) {
      const first = this.cache.get(0);
      base = first && this.video.currentTime < first.time ? -1 : this.total;
    }
    this.seekTo(base + delta);
  }

  draw(index) {
    const ctx = this.canvas.getContext("2d");
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    const frame = index === null ? null : this.cache.get(index);
    if (index !== null && !frame) return; // its page is coming: drawn by refresh() then
    if (frame && this.size[0]) {
      drawFrame(ctx, frame, { scale: this.canvas.width / this.size[0], unit: window.devicePixelRatio || 1,
        jointFormat: this.jointFormat });
    }
    this.shown = index;
    document.body.dataset.frame = index === null ? "none" : String(index);
    this.timeline.setCurrent(index);
    $("position").textContent = frame ?
      `frame ${index} of 0-${this.total - 1} · ${frame.time.toFixed(3)} s · ${frame.people.length} people` :
      `no result frame at ${this.video.currentTime.toFixed(3)} s`;
  }

  showJob(job) {
    $("job-title").textContent = job.filename ? `${job.filename} (${job.job_id || this.api.jobId})` :
      job.job_id || this.api.jobId;
    $("meta").replaceChildren();
    const engine = job.engine;
    if (engine) {
      setMeta("Engine", typeof engine === "object" ?
        [engine.name, engine.version, engine.joint_format].filter(Boolean).join(", ") : String(engine));
    }
    const video = job.video;
    if (video) {
      const width = video.display_width || video.width;
      const height = video.display_height || video.height;
      setMeta("Video", [width && `${width}x${height}`, video.fps && `${Number(video.fps).toFixed(2)} fps`,
        video.codec, video.duration_s && `${Number(video.duration_s).toFixed(1)} s`].filter(Boolean).join(", "));
    }
    const p = job.processing;
    if (p) {
      const span = p.start_s != null || p.end_s != null ?
        `, ${p.start_s ?? 0} s to ${p.end_s != null ? `${p.end_s} s` : "the end"}` : "";
      setMeta("Processed", `${p.frame_width}x${p.frame_height}, ${p.fps ? `${p.fps} fps` : "every frame"}${span}`);
    }
    for (const [name, value] of Object.entries(job.timings || {})) {
      if (typeof value === "number") setMeta(name.replace(/_s$/, "").replace(/_/g, " "), `${value.toFixed(2)} s`);
    }
    setMeta("State", job.state);
  }

  fail(message) {
    status(message, true);
  }
}

function status(message, isError = false) {
  const element = $("status");
  element.textContent = message;
  element.classList.toggle("error", isError);
}

function setMeta(name, value) {
  const term = document.createElement("dt");
  term.textContent = name;
  const definition = document.createElement("dd");
  definition.textContent = value;
  $("meta").append(term, definition);
}

const api = Api.fromLocation(window.location);
if (api) {
  new Viewer(api).start();
} else {
  status("This page must be opened at /v1/jobs/{id}/viewer.", true);
}
