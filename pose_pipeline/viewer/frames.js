// The result's frames, loaded by range (`GET .../frames?start=&count=`) and kept in a few
// pages, so that a ten-minute video never loads its whole result: at most MAX_PAGES pages of
// PAGE_FRAMES frames are in memory, the least recently used go first. The page ahead is
// fetched while playing, before it is needed.

export const PAGE_FRAMES = 256;
const MAX_PAGES = 12;
const PREFETCH_WITHIN = 96; // frames before a page's end at which the next page is fetched

export class FrameCache {
  constructor(api, total, onLoaded) {
    this.api = api;
    this.total = total;
    this.onLoaded = onLoaded; // called with the page number when a page arrives
    this.pages = new Map(); // page number -> frames; Map order is the LRU order
    this.pending = new Map(); // page number -> Promise
    this.failed = null;
  }

  pageOf(index) {
    return Math.floor(index / PAGE_FRAMES);
  }

  // The frame if its page is loaded, else undefined (and its page is requested).
  get(index) {
    if (index < 0 || index >= this.total) return undefined;
    const page = this.pageOf(index);
    const frames = this.pages.get(page);
    if (!frames) {
      this.prefetch(page);
      return undefined;
    }
    this.pages.delete(page); // most recently used: to the end of the Map
    this.pages.set(page, frames);
    if (index % PAGE_FRAMES >= PAGE_FRAMES - PREFETCH_WITHIN) this.prefetch(page + 1);
    return frames[index % PAGE_FRAMES];
  }

  // Ask for a page without waiting for it; a failure is kept in `failed` (and shown by the
  // page) instead of becoming an unhandled rejection.
  prefetch(page) {
    this.load(page).catch(() => {});
  }

  // Resolves to the frame, loading its page if needed.
  async fetch(index) {
    await this.load(this.pageOf(index));
    return this.get(index);
  }

  load(page) {
    if (page < 0 || page * PAGE_FRAMES >= this.total) return Promise.resolve();
    if (this.pages.has(page)) return Promise.resolve();
    if (!this.pending.has(page)) {
      const request = this.api.frames(page * PAGE_FRAMES, PAGE_FRAMES).then((body) => {
        this.pages.set(page, body.frames);
        while (this.pages.size > MAX_PAGES) this.pages.delete(this.pages.keys().next().value);
        this.pending.delete(page);
        this.onLoaded(page);
      }, (error) => {
        this.pending.delete(page);
        this.failed = error;
        throw error;
      });
      this.pending.set(page, request);
    }
    return this.pending.get(page);
  }

  // The index of the processed frame shown at video time `t`: the last one whose time is at
  // most `t` (+ `slack`, half a source frame), or null before the first and after the last
  // (+ one processed frame). Returns {index} or, when a page it needs is not loaded yet,
  // {missing: page} (the page is requested). `fps`: the processed frame rate, for the guess
  // of where to look; exact for constant-rate video, corrected by the frames' own times.
  locate(t, fps, slack) {
    const first = this.get(0);
    if (!first) return { missing: 0 };
    if (t + slack < first.time) return { index: null };
    let guess = Math.min(this.total - 1, Math.max(0, Math.floor((t - first.time) * fps + 0.5)));
    for (let step = 0; step < 64; step++) {
      const page = this.pageOf(guess);
      const frames = this.pages.get(page);
      if (!frames) {
        this.prefetch(page);
        return { missing: page };
      }
      const start = page * PAGE_FRAMES;
      if (t + slack < frames[0].time) { // earlier: the previous page
        guess = start - 1;
        continue;
      }
      const last = frames[frames.length - 1];
      if (t + slack >= last.time && start + frames.length < this.total) {
        const next = this.pages.get(page + 1);
        if (!next) {
          // Far past this page's last frame: its next page holds it (or a later one).
          if (t - last.time > 1.5 / fps) {
            guess = start + frames.length;
            continue;
          }
          this.prefetch(page + 1); // for later; this page's last frame is the answer meanwhile
        } else if (t + slack >= next[0].time) {
          guess = start + frames.length;
          continue;
        }
      }
      let lo = 0;
      let hi = frames.length - 1; // binary search: last frame with time <= t + slack
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (frames[mid].time <= t + slack) lo = mid;
        else hi = mid - 1;
      }
      const index = start + lo;
      if (index === this.total - 1 && t - frames[lo].time > 1 / fps + slack) return { index: null };
      this.get(index); // LRU and prefetch
      return { index };
    }
    return { index: null };
  }
}
