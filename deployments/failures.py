"""Ray's failures as the service's typed errors.

Ray raises typed exceptions for what can happen to a call: a dead actor, a worker killed by
the memory monitor, a lost object, a full queue. (A call whose argument was another replica's
pending response got a replica's death only as a ``RayServeException``'s text, measured on
2.60: the ingress awaits each response itself, so no error is read from text.)
"""

from __future__ import annotations

import re

import ray._private.state
import ray.exceptions
from ray.serve.exceptions import BackPressureError

from pose_pipeline.errors import RETRY_AFTER_S, HostOutOfMemory, Overloaded, PipelineError, WorkerDied, unexpected

_DEATHS = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, ray.exceptions.WorkerCrashedError,
           ray.exceptions.ObjectLostError)


def as_pipeline_error(exc: BaseException, stage: str = "a deployment") -> PipelineError:
    """The typed error behind an exception raised by a call to ``stage``; one that is none of
    the service's: ``internal_error``, its text (Ray's traceback) kept in the log only."""
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
    cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None else exc
    return unexpected(cause, stage)


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


#: What Ray's texts carry of the cluster that a client must not see: colour codes, process ids,
#: addresses, node and worker ids.
_INTERNALS = re.compile(r"\x1b\[[0-9;]*m|\b(pid|ip|node_id|worker_id|actor_id)=[^\s,)]+|\b(IP|ID): [^\s,)]+"
                        r"|\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b")
_EMPTIED = re.compile(r"\(\s*(,\s*)*\)|(?<=\()\s*,\s*|\s*,\s*(?=\))")


def _first_line(text: str) -> str:
    """Ray's first line of ``text``, for a client: without what it says of the cluster."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return " ".join(_EMPTIED.sub("", _INTERNALS.sub("", line)).split())[:300]
