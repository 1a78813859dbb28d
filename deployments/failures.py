"""Ray's failures as the service's typed errors.

Ray raises typed exceptions for most of what can happen to a call: a dead actor, a worker
killed by the memory monitor, a lost object, a full queue. One case has no type: a replica
that died while a later stage waited on its result reaches the caller as a plain
``RayServeException`` whose text holds Ray's original error (measured on 2.60). That text is
read in one place, ``_from_text``; tests/test_faults.py provokes the real exception.
"""

from __future__ import annotations

import ray._private.state
import ray.exceptions
from ray.serve.exceptions import BackPressureError, RayServeException

from pose_pipeline.errors import RETRY_AFTER_S, HostOutOfMemory, InternalError, Overloaded, PipelineError, WorkerDied

_DEATHS = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, ray.exceptions.WorkerCrashedError,
           ray.exceptions.ObjectLostError)


def as_pipeline_error(exc: BaseException) -> PipelineError:
    """The typed error behind an exception raised by a deployment call."""
    if isinstance(exc, PipelineError):
        cause = getattr(exc, "cause", None)  # a RayTaskError wrapping ours: give back the original
        return cause if isinstance(cause, PipelineError) else exc
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(exc.cause, PipelineError):
        return exc.cause
    if isinstance(exc, ray.exceptions.OutOfMemoryError):  # a RayError, not a RayActorError
        return _node_oom(str(exc))
    if isinstance(exc, _DEATHS):
        return _worker_died(str(exc))
    if isinstance(exc, BackPressureError):
        return Overloaded("the service is at capacity; try again later", retry_after_s=RETRY_AFTER_S)
    if isinstance(exc, RayServeException):
        typed = _from_text(str(exc))
        if typed is not None:
            return typed
    return InternalError(f"{type(exc).__name__}: {str(exc)[:500]}")


def _from_text(text: str) -> PipelineError | None:
    """The error that a ``RayServeException``'s text names, if it names a death or a kill."""
    if "OutOfMemoryError" in text:
        return _node_oom(text)
    if "died" in text or "ActorDiedError" in text or "ActorUnavailableError" in text:
        return _worker_died(text)
    return None


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
