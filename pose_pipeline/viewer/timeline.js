// The track timeline: one row per track, its segments (runs of frames in which it was seen)
// as bars in the track's colour, a label button per row. A click on a label seeks to the
// track's first frame; a click on a bar to the frame under the pointer, or to the track's
// nearest frame when the pointer is in a gap. Bars are drawn once on a canvas (thousands of
// segments stay cheap); only the playhead is redrawn while playing, on a canvas of its own.

import { css, trackColor } from "./overlay.js";

const ROW = 16; // CSS pixels per track

export class Timeline {
  constructor(root, { tracks, totalFrames, onSeek }) {
    this.tracks = tracks;
    this.total = Math.max(totalFrames, 1);
    this.onSeek = onSeek;
    this.current = null;
    root.replaceChildren();
    const labels = document.createElement("div");
    labels.className = "timeline-labels";
    for (const track of tracks) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "track-label";
      button.dataset.track = String(track.track_id);
      button.textContent = `#${track.track_id}`;
      button.style.borderLeftColor = css(trackColor(track.track_id));
      button.title = `track ${track.track_id}: frames ${track.first_frame}-${track.last_frame}, ` +
        `${track.frames_detected} detected, ${track.frames_predicted} predicted`;
      button.addEventListener("click", () => onSeek(track.first_frame));
      labels.append(button);
    }
    this.area = document.createElement("div");
    this.area.className = "timeline-bars";
    this.bars = document.createElement("canvas");
    this.head = document.createElement("canvas");
    this.head.className = "timeline-head";
    this.area.append(this.bars, this.head);
    this.area.addEventListener("click", (event) => this.click(event));
    root.append(labels, this.area);
    new ResizeObserver(() => this.render()).observe(this.area);
  }

  render() {
    const unit = window.devicePixelRatio || 1;
    const width = Math.max(this.area.clientWidth, 1);
    const height = Math.max(this.tracks.length * ROW, ROW);
    for (const canvas of [this.bars, this.head]) {
      canvas.width = Math.round(width * unit);
      canvas.height = Math.round(height * unit);
      canvas.style.width = `${width}px`;
      canvas.style.height = `${height}px`;
    }
    const ctx = this.bars.getContext("2d");
    const perFrame = this.bars.width / this.total;
    this.tracks.forEach((track, row) => {
      ctx.fillStyle = css(trackColor(track.track_id));
      for (const [first, last] of track.segments) {
        ctx.fillRect(first * perFrame, (row * ROW + 3) * unit, Math.max((last - first + 1) * perFrame, unit),
          (ROW - 6) * unit);
      }
    });
    this.setCurrent(this.current);
  }

  setCurrent(index) {
    this.current = index;
    const ctx = this.head.getContext("2d");
    ctx.clearRect(0, 0, this.head.width, this.head.height);
    if (index === null || index === undefined) return;
    const x = ((index + 0.5) / this.total) * this.head.width;
    ctx.fillStyle = "#fff";
    ctx.fillRect(Math.round(x) - 1, 0, 2, this.head.height);
  }

  click(event) {
    const box = this.area.getBoundingClientRect();
    const row = Math.floor((event.clientY - box.top) / ROW);
    const track = this.tracks[row];
    if (!track) return;
    const frame = Math.min(this.total - 1, Math.max(0, Math.floor(((event.clientX - box.left) / box.width) * this.total)));
    this.onSeek(nearestFrame(track.segments, frame));
  }
}

// `frame` if a segment holds it, else the closest end of a segment.
export function nearestFrame(segments, frame) {
  let best = segments.length ? segments[0][0] : frame;
  for (const [first, last] of segments) {
    if (first <= frame && frame <= last) return frame;
    for (const end of [first, last]) {
      if (Math.abs(end - frame) < Math.abs(best - frame)) best = end;
    }
  }
  return best;
}
