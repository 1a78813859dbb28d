"""One configuration object for the whole service, loaded from YAML and the environment.

Precedence, lowest first: the defaults below, a YAML file (``--config`` or
``$POSE_PIPELINE_CONFIG``), then environment variables named
``POSE_PIPELINE_<SECTION>__<FIELD>`` (for example ``POSE_PIPELINE_DECODE__MAX_SIDE=720``),
whose values are parsed as YAML scalars. docs/configuration.md lists every field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field

from .errors import InvalidOption

MiB = 1024 * 1024
GiB = 1024 * MiB

ENV_PREFIX = "POSE_PIPELINE_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Section):
    """What the service accepts. Checked while uploading and at probe time."""

    max_upload_bytes: int = 2 * GiB
    #: Largest file sent in one request (POST /v1/jobs, /v1/track). Serve's HTTP proxy and
    #: the ingress each hold such a body whole in memory; larger files go in parts.
    max_body_bytes: int = 256 * MiB
    #: Largest part of an upload in parts (/v1/uploads): what the proxy and the ingress
    #: hold per request.
    max_part_bytes: int = 16 * MiB
    #: An upload in parts that receives nothing for this long is removed.
    upload_idle_s: float = 3600.0
    max_width: int = 4096
    max_height: int = 4096
    max_duration_s: float = 1800.0
    #: Codecs we decode. Others are refused with ``unsupported_codec`` before any work starts.
    allowed_codecs: tuple[str, ...] = (
        "h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mjpeg", "prores", "mpeg2video", "theora",
    )


class DecodeSettings(_Section):
    """Defaults for how a video is turned into frames; a request may override fps/max_side."""

    #: Byte budget of one chunk of decoded RGB frames. Bounds decode, tracking and GPU memory.
    chunk_bytes: int = 256 * MiB
    #: Sample the video at this rate (frames dropped by timestamp); None keeps every frame.
    fps: float | None = None
    #: Longest side of decoded frames in pixels (FFmpeg's scaler); None keeps the source size.
    max_side: int | None = 1280
    #: FFmpeg decoder threads; 0 lets FFmpeg choose.
    threads: int = 0


class EngineSettings(_Section):
    #: Registered engine name: "blazepose" (CPU skeletons; model files fetched from a pinned
    #: wheel), "phalp" (GPU, upstream PHALP + HMR2.0) or "motion" (CPU boxes of moving
    #: things, no model: for tests of the service).
    name: str = "blazepose"
    #: Engine-specific options, passed to the engine's constructor (see docs/engines.md).
    options: dict[str, Any] = Field(default_factory=dict)


class FaultSpec(_Section):
    """Test-only fault injection. Only server-side configuration can enable it."""

    kind: Literal["gpu_oom", "exit", "host_oom", "hang", "raise"]
    #: Chunk index at which to fire.
    chunk: int = 0
    #: Fire only for uploads whose file name is this (None: every job).
    filename: str | None = None
    #: How many times the fault fires in total, across replica restarts.
    times: int = 1
    #: For gpu_oom: fire only while the batch is larger than this (0: at every batch size).
    above_batch: int = 0


class JobSettings(_Section):
    #: A chunk that takes longer fails with ``timeout`` and its replica is replaced.
    chunk_timeout_s: float = 600.0
    #: Attempts per chunk after a worker death, OOM kill or timeout before the job fails.
    max_chunk_retries: int = 2
    #: Jobs processed at once per ingress replica; more wait in the queue.
    max_running: int = 4
    #: Jobs waiting; past this, new jobs get 503 with Retry-After.
    max_queued: int = 32
    #: Seconds a finished job and its files are kept.
    ttl_s: float = 24 * 3600.0
    #: Seconds without a heartbeat after which another runner takes a running job over.
    lease_s: float = 30.0
    #: Decode a job's next chunk while its current chunk is tracked (one more chunk per job
    #: in Ray's object store). Off: decode, track and commit run one after the other.
    decode_ahead: bool = True


class TrackingSettings(_Section):
    #: Resident memory the tracking replica allows itself; past it the chunk fails with
    #: ``out_of_memory`` before Ray's node memory monitor or the kernel kill anything.
    memory_limit_bytes: int | None = None
    #: Cap on this process's CUDA memory as a fraction of the device. None: use the
    #: replica's ``num_gpus`` from Ray, so that two 0.5-GPU replicas cannot starve each other.
    cuda_memory_fraction: float | None = None
    faults: tuple[FaultSpec, ...] = ()
    #: Where fired faults are counted (so a restarted replica does not fire again).
    fault_state_dir: str | None = None


class StoreSettings(_Section):
    #: Job records (SQLite), uploads, checkpoints and results. Must be shared by all nodes.
    root: str = str(Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share")) / "pose-pipeline")


class AuthSettings(_Section):
    #: Bearer tokens accepted by the HTTP API. Empty: no authentication (local use).
    tokens: tuple[str, ...] = ()


class Settings(_Section):
    limits: Limits = Limits()
    decode: DecodeSettings = DecodeSettings()
    engine: EngineSettings = EngineSettings()
    jobs: JobSettings = JobSettings()
    tracking: TrackingSettings = TrackingSettings()
    store: StoreSettings = StoreSettings()
    auth: AuthSettings = AuthSettings()

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        data: dict[str, Any] = {}
        path = path or env.get(ENV_PREFIX + "CONFIG")
        if path:
            data = yaml.safe_load(Path(path).read_text()) or {}
        return cls.from_dict(_merge(data, _env_overrides(env)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Settings":
        try:
            return cls.model_validate(dict(data))
        except ValueError as exc:
            raise InvalidOption(f"invalid configuration: {exc}") from None


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        section, _, field = key[len(ENV_PREFIX):].lower().partition("__")
        out.setdefault(section, {})[field] = yaml.safe_load(raw)
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
