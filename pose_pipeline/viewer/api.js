// The service's API as the page uses it: the bearer token (asked once, kept in this tab's
// sessionStorage, sent as `Authorization: Bearer` on every call, never put in a URL), and the
// media token that the <video> element uses instead, since it cannot send headers.

const TOKEN_KEY = "pose-pipeline.bearer-token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

export class Api {
  // `base`: the service's root URL (everything before /v1/...); `jobId`: the job.
  constructor(base, jobId) {
    this.base = base;
    this.jobId = jobId;
    this.token = sessionStorage.getItem(TOKEN_KEY);
  }

  static fromLocation(location) {
    const match = /^(.*)\/v1\/jobs\/([^/]+)\/viewer\/?$/.exec(location.pathname);
    if (!match) return null;
    return new Api(location.origin + match[1], decodeURIComponent(match[2]));
  }

  setToken(token) {
    this.token = token || null;
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  }

  url(path = "") {
    return `${this.base}/v1/jobs/${encodeURIComponent(this.jobId)}${path}`;
  }

  async json(path, init = {}) {
    const headers = { Accept: "application/json", ...(init.headers || {}) };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    const response = await fetch(this.url(path), { ...init, headers });
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      const error = (body && body.error) || {};
      throw new ApiError(response.status, error.code, error.message);
    }
    return response.json();
  }

  job() {
    return this.json("");
  }

  frames(start, count) {
    return this.json(`/frames?start=${start}&count=${count}`);
  }

  tracks() {
    return this.json("/tracks");
  }

  // {url, expiresAt (ms since the epoch, or null)} for the <video> element.
  async video() {
    try {
      const { token, expires_at: expiresAt } = await this.json("/media-token", { method: "POST" });
      return { url: this.url(`/video?media_token=${encodeURIComponent(token)}`), expiresAt: expiresAt * 1000 };
    } catch (error) {
      // A service without media tokens: the plain URL works when it has no auth.
      if (error.status === 404 || error.status === 405) return { url: this.url("/video"), expiresAt: null };
      throw error;
    }
  }
}
