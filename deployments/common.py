"""What every deployment shares: settings from the Serve config, the job store, logging,
and the translation of Ray's failures into the service's typed errors."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

import ray._private.state
import ray.exceptions
from ray.serve.exceptions import BackPressureError, RayServeException

from pose_pipeline.config import ENV_PREFIX, Settings, _env_overrides, _merge
from pose_pipeline.errors import HostOutOfMemory, InternalError, Overloaded, PipelineError, WorkerDied
from pose_pipeline.jobs import RETRY_AFTER_S
from pose_pipeline.store import JobStore, LocalJobStore

# Serve writes this logger to the replica's log file (JSON with serve_config.yaml's
# logging_config), with ``extra`` fields such as job_id and code as top-level keys.
log = logging.getLogger("ray.serve")


def settings_from_args(args: Mapping[str, Any] | None) -> Settings:
    """The YAML file named by ``$POSE_PIPELINE_CONFIG`` (if any), then ``args.settings`` of
    the Serve application, then ``POSE_PIPELINE_<SECTION>__<FIELD>`` variables."""
    base: dict[str, Any] = {}
    if os.environ.get(ENV_PREFIX + "CONFIG"):
        base = yaml.safe_load(Path(os.environ[ENV_PREFIX + "CONFIG"]).read_text()) or {}
    app = dict((args or {}).get("settings") or {})
    return Settings.from_dict(_merge(_merge(base, app), _env_overrides(os.environ)))


def open_store(settings: Settings) -> JobStore:
    return LocalJobStore(settings.store.root)


def as_pipeline_error(exc: BaseException) -> PipelineError:
    """The typed error behind an exception raised by a deployment call."""
    if isinstance(exc, PipelineError):
        cause = getattr(exc, "cause", None)  # a RayTaskError wrapping ours: give back the original
        return cause if isinstance(cause, PipelineError) else exc
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(exc.cause, PipelineError):
        return exc.cause
    if isinstance(exc, ray.exceptions.OutOfMemoryError):
        return _node_oom(str(exc))
    if isinstance(exc, (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError,
                        ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError)):
        return _worker_died(str(exc))
    if isinstance(exc, BackPressureError):
        return Overloaded("the service is at capacity; try again later", retry_after_s=RETRY_AFTER_S)
    if isinstance(exc, RayServeException):
        # A replica that died while a later stage waited on its result reaches the caller as
        # a RayServeException whose text holds Ray's original error (measured on 2.60).
        text = str(exc)
        if "OutOfMemoryError" in text:
            return _node_oom(text)
        if "died" in text or "ActorDiedError" in text or "ActorUnavailableError" in text:
            return _worker_died(text)
    return InternalError(f"{type(exc).__name__}: {str(exc)[:500]}")


def runner_death_cause(owner: str) -> PipelineError | None:
    """Why the ingress replica ``owner`` (``ingress-<actor id>``) died, from Ray's actor
    table: a kill by the node's memory monitor is recorded there (measured on 2.60); other
    deaths, or an actor Ray no longer knows, give None."""
    actor_id = owner.removeprefix("ingress-")
    try:
        death = ray._private.state.state.actor_table(actor_id).get("DeathCause")
    except Exception:  # not a Ray actor id, or the GCS unreachable: the cause stays unknown
        return None
    if death is not None and death.HasField("oom_context"):
        return _node_oom(death.oom_context.error_message)
    return None


def _worker_died(text: str) -> WorkerDied:
    return WorkerDied("a worker process died while processing the job (crash, kill or lost node); "
                      "it was restarted", ray_error=_first_line(text))


def _node_oom(text: str) -> HostOutOfMemory:
    return HostOutOfMemory("the node ran out of memory and Ray's memory monitor killed a worker of this job; "
                           "use a smaller max_side or chunk (decode.chunk_bytes), or give the nodes more memory",
                           kind="node", ray_error=_first_line(text))


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:300]
