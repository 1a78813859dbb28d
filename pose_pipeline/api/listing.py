"""The job list (``GET /v1/jobs``): its query parameters, checked, and its opaque cursors.

Pages are cut by key, not by offset: a cursor holds the (``created_at``, id) of the last job
of its page, and the next page starts after it in the list's order (newest first, then by
id). A job created or deleted meanwhile neither repeats nor hides another one. The cursor is
base64url of that pair as JSON: opaque to clients (they pass it back as it is), and checked
like any other parameter when it comes back.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass

from ..errors import InvalidOption
from ..jobs.store import JobRecord, JobState
from ..files import compact_json
from .params import whole_number

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@dataclass(frozen=True)
class JobQuery:
    limit: int = DEFAULT_LIMIT
    #: Only jobs in these states; empty: every job.
    states: tuple[JobState, ...] = ()
    #: (created_at, id) of the last job of the previous page.
    after: tuple[float, str] | None = None

    @classmethod
    def parse(cls, limit: str | None = None, cursor: str | None = None, state: str | None = None) -> JobQuery:
        """The query of ``?limit=&cursor=&state=`` (``state``: one state, or several separated
        by commas); ``InvalidOption`` naming the parameter at fault."""
        return cls(_limit(limit), _states(state), None if cursor in (None, "") else decode_cursor(cursor))


def _limit(value: str | None) -> int:
    return whole_number(value, "limit", default=DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)


def _states(value: str | None) -> tuple[JobState, ...]:
    names = [name.strip() for name in (value or "").split(",") if name.strip()]
    unknown = [name for name in names if name not in JobState.__members__]
    if unknown:
        raise InvalidOption(f"state must be one of {', '.join(JobState.__members__)} (several: comma-separated), "
                            f"not {', '.join(repr(name[:40]) for name in unknown)}", option="state")
    return tuple(dict.fromkeys(JobState(name) for name in names))


def encode_cursor(record: JobRecord) -> str:
    """The cursor of the page after ``record``."""
    raw = compact_json([record.created_at, record.id]).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    refused = InvalidOption("cursor is not one this service gave: pass next_cursor of the previous page as it is",
                            option="cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, job_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise refused from None
    if not isinstance(created_at, (int, float)) or isinstance(created_at, bool) or not math.isfinite(created_at) \
            or not isinstance(job_id, str) or not job_id.isalnum():
        raise refused
    return float(created_at), job_id
