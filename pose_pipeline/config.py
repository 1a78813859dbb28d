"""One configuration object for the whole service, loaded by one function, ``Settings.load``.

Precedence, lowest first:

1. the defaults below;
2. a YAML file: ``path`` (``pose-pipeline --config FILE``), else ``$POSE_PIPELINE_CONFIG``;
3. ``app``: the Serve application's ``args.settings`` (the service only);
4. environment variables ``POSE_PIPELINE_<SECTION>__<FIELD>`` (for example
   ``POSE_PIPELINE_DECODE__MAX_SIDE=720``): a text field takes the value as it is (a
   password with `` #`` in it, the word ``on``); any other field reads it as YAML (a number,
   ``true``, ``null``, a list, a mapping).

Mappings are merged key by key. docs/configuration.md lists every field; its tables are
generated from the descriptions here (``python docs/settings_doc.py``).
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InvalidOption

MiB = 1024 * 1024
GiB = 1024 * MiB

ENV_PREFIX = "POSE_PIPELINE_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Section):
    """What the service accepts. Upload size is checked while receiving; the rest when the
    upload is probed, before a job is created ([api.md](api.md#limits))."""

    max_upload_bytes: int = Field(2 * GiB, description="larger uploads get `413 file_too_large`")
    max_body_bytes: int = Field(256 * MiB, description=(
        "largest file sent in one request (`POST /v1/jobs`, `/v1/track`): Serve's proxy and the ingress each "
        "hold such a body whole in memory; larger files must go in parts (`413 file_too_large` says so)"))
    max_part_bytes: int = Field(16 * MiB, description=(
        "largest part of an upload in parts: what the proxy and the ingress hold per request"))
    upload_idle_s: float = Field(3600.0, description=(
        "an upload in parts that receives nothing for this long is deleted"))
    max_width: int = Field(4096, description="width after rotation; over it `422 resolution_too_large`")
    max_height: int = Field(4096, description="height after rotation")
    max_duration_s: float = Field(1800.0, description=(
        "longer videos get `422 duration_too_long` (the whole video's duration, whatever `end_s`)"))
    allowed_codecs: tuple[str, ...] = Field(
        ("h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mjpeg", "prores", "mpeg2video", "theora"),
        description=("FFmpeg decoder names; others get `415 unsupported_codec` before any work starts, with the "
                     "`ffmpeg` command that re-encodes the file to H.264. Legacy codecs (`msmpeg4`, `wmv2`, `h263`, "
                     "`flv`, ...) are left out on purpose: see [Codecs](#codecs)"))


class DecodeSettings(_Section):
    """How a video becomes frames. A request may override `fps` and `max_side`."""

    chunk_bytes: int = Field(256 * MiB, description=(
        "byte budget of one chunk of decoded RGB frames: frames per chunk = `chunk_bytes // (width × height × 3)` "
        "(at least 1). Bounds decode, tracking and GPU memory per chunk"))
    fps: float | None = Field(None, description="sample at this rate (by timestamp); null: every frame")
    max_side: int | None = Field(1280, description=(
        "downscale so the longest side is at most this (FFmpeg's scaler); null: source size"))
    threads: int = Field(0, description=(
        "FFmpeg decoder threads; 0: the Decode replica uses its `num_cpus` (at least 1), the CLI lets FFmpeg "
        "choose (one per core)"))


class EngineSettings(_Section):
    """The tracking engine of the deployment ([engines.md](engines.md))."""

    name: str = Field("blazepose", description=(
        "registered engine: `blazepose` (CPU skeletons; model files fetched from a pinned wheel), `phalp` "
        "(GPU, PHALP + HMR2.0) or `motion` (CPU boxes of moving things, no model: for tests of the service). "
        "One engine per deployment: a request naming another gets `422 invalid_option`"))
    options: dict[str, Any] = Field(default_factory=dict, description=(
        "passed to the engine's constructor; see [Engine options](#engine-options)"))


class JobSettings(_Section):
    """How jobs run: deadlines, retries, admission, lifetime."""

    chunk_timeout_s: float = Field(600.0, description=(
        "a chunk (decode + tracking + commit, including time waiting in the deployments' queues) that takes "
        "longer fails with `timeout` and is retried; the Tracking replica also fails its health check once a "
        "chunk has run this long"))
    max_chunk_retries: int = Field(2, description=(
        "retries of a chunk after a retryable error (`worker_died`, `out_of_memory`, `timeout`, `overloaded`) "
        "before the job fails"))
    max_running: int = Field(4, description="jobs processed at once **per ingress replica**")
    max_queued: int = Field(32, description=(
        "jobs waiting per ingress replica; when `max_running + max_queued` jobs are held, new uploads get "
        "`503 overloaded` with `Retry-After: 5` before their body is read"))
    ttl_s: float = Field(24 * 3600.0, description=(
        "a finished job (record and files) is deleted this long after it ended"))
    lease_s: float = Field(30.0, description=(
        "a running job whose runner (ingress replica) has not renewed its lease for this long is taken over by "
        "another runner and continues from its last committed chunk"))
    events_stream_s: float = Field(300.0, gt=0, description=(
        "an event stream (`GET /v1/jobs/{id}/events`) ends after this long and the client resumes it with "
        "`Last-Event-ID`: well below the proxy's `request_timeout_s`, which would cut it without a word"))
    decode_ahead: bool = Field(True, description=(
        "decode a job's next chunk while its current one is tracked, so that decoding overlaps tracking "
        "(bench/RESULTS.md, section 2); costs one more chunk per job in Ray's object store. Off: the stages "
        "of a job run one after the other"))


class TrackingSettings(_Section):
    """The Tracking replica's own limits."""

    memory_limit_bytes: int | None = Field(None, description=(
        "resident memory (RSS) the Tracking replica allows itself while it processes a chunk; past it the chunk "
        "fails with `out_of_memory` (`kind: host`) before Ray's node memory monitor or the kernel kill "
        "anything, and the process lives on. null: no limit of its own"))
    cuda_memory_fraction: float | None = Field(None, description=(
        "cap on the replica's CUDA memory as a fraction (0, 1] of the device, applied before the engine loads. "
        "null: the replica's Ray `num_gpus` when it is below 1, so that two 0.5-GPU replicas cannot starve "
        "each other, else no cap. Ignored without CUDA"))


def _default_store_root() -> str:
    return str(Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share")) / "pose-pipeline")


class StoreSettings(_Section):
    """Where jobs live ([architecture.md](architecture.md#state-and-where-it-lives))."""

    root: str = Field(default_factory=_default_store_root, description=(
        "job records (SQLite), uploads (`spool/`), chunk checkpoints and results (`jobs/<id>/`). On a cluster "
        "it must be a volume every node mounts at the same path"),
        json_schema_extra={"doc_default": "`$XDG_DATA_HOME/pose-pipeline`, else `~/.local/share/pose-pipeline`"})
    database: str | None = Field(None, description=(
        "PostgreSQL connection string (`postgresql://user:password@host:5432/dbname`, or libpq's `key=value` "
        "form) for the job records, leases and attempts, shared by several ingress replicas; the files stay "
        "under `root`. Needs the `postgres` extra (psycopg). On KubeRay, from a Secret: "
        "`POSE_PIPELINE_STORE__DATABASE` ([operations.md](operations.md#kubernetes-kuberay)). null: SQLite in "
        "`root` (one ingress replica)"))


class AuthSettings(_Section):
    """Who may call the HTTP API."""

    tokens: tuple[str, ...] = Field((), description=(
        "bearer tokens accepted on `/v1/...`; empty: no authentication ([api.md](api.md#authentication))"))
    media_token_ttl_s: float = Field(3600.0, gt=0, description=(
        "lifetime of a media token (`POST /v1/jobs/{id}/media-token`), with which the viewer's `<video>` element "
        "loads the job's video without the bearer header; never past the job's `expires_at`. The viewer renews it "
        "before it expires"))


class Settings(_Section):
    limits: Limits = Limits()
    decode: DecodeSettings = DecodeSettings()
    engine: EngineSettings = EngineSettings()
    jobs: JobSettings = JobSettings()
    tracking: TrackingSettings = TrackingSettings()
    store: StoreSettings = StoreSettings()
    auth: AuthSettings = AuthSettings()

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, *, app: Mapping[str, Any] | None = None,
             env: Mapping[str, str] | None = None) -> Settings:
        """The settings from, lowest first: defaults, the YAML file ``path`` (else
        ``$POSE_PIPELINE_CONFIG``), ``app`` (a Serve application's ``args.settings``), and
        the environment ``env`` (default: ``os.environ``)."""
        env = os.environ if env is None else env
        data: dict[str, Any] = {}
        path = path or env.get(CONFIG_ENV)
        if path:
            data = yaml.safe_load(Path(path).read_text()) or {}
        for layer in (dict(app or {}), _env_overrides(env)):
            data = _merge(data, layer)
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Settings:
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise InvalidOption(f"invalid configuration: {exc}") from None


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        section, _, field = key[len(ENV_PREFIX):].lower().partition("__")
        out.setdefault(section, {})[field] = raw if _is_text(section, field) else yaml.safe_load(raw)
    return out


def _is_text(section: str, field: str) -> bool:
    """Whether ``section.field`` holds text (``str``, or ``str`` or null)."""
    part = Settings.model_fields.get(section)
    model = part.annotation if part is not None else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)) or field not in model.model_fields:
        return False
    annotation = model.model_fields[field].annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return set(typing.get_args(annotation)) == {str, type(None)}
    return annotation is str


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
