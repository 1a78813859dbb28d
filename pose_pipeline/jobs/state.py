"""A job's state and stage: apart from the store, for the clients that only read them."""

from __future__ import annotations

from enum import Enum


class JobState(str, Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    def __str__(self) -> str:  # its name as clients see it, in f-strings and logs too
        return self.value

    @property
    def terminal(self) -> bool:
        return self in (JobState.succeeded, JobState.failed, JobState.cancelled)


class JobStage(str, Enum):
    """Where a job's work is: waiting, tracking its chunks, assembling its result; once it
    has ended, its state."""

    queued = "queued"
    tracking = "tracking"
    aggregation = "aggregation"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    def __str__(self) -> str:  # as JobState's
        return self.value
