"""Running jobs in the background: admission, the chunk loop, retries, deadlines,
cancellation and takeover of jobs whose runner died.

The runner knows nothing of Ray: it drives a ``Stages`` object that turns one chunk task
into a committed chunk, and finalises a job. The Serve ingress passes stages that call
the decode, tracking and aggregation deployments; tests can pass in-process stages.

Job records and checkpoints live in the ``JobStore``, so a runner that dies (its ingress
replica restarted) loses nothing: another runner sees the job's lease expire, claims it,
and continues from its last committed chunk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from .messages import ChunkReceipt, ChunkTask, Decoded
from ..config import JobSettings
from ..errors import (RETRY_AFTER_S, ChunkTimeout, JobCancelled, JobError, Overloaded, PipelineError, WorkerDied,
                      unexpected)
from .state import JobStage
from .store import JobRecord, JobState, JobStore
from ..video import DecodeCursor

log = logging.getLogger("pose_pipeline.jobs.runner")

__all__ = ["RETRY_AFTER_S", "DeathCause", "JobObserver", "JobRunner", "Stages"]
#: Pause before running a failed chunk again, times the attempt number.
RETRY_PAUSE_S = 0.5


class Stages(Protocol):
    async def decode(self, task: ChunkTask) -> Decoded:
        """Decode the task's chunk."""

    async def track(self, decoded: Decoded) -> ChunkReceipt:
        """Track a decoded chunk and commit its output and tracker checkpoint to the store."""

    async def finalize(self, job_id: str) -> dict[str, int]:
        """Write the result files; return their sizes by format."""


@dataclass(frozen=True)
class _Ahead:
    """The next chunk, decoding while the current one is tracked."""

    task: ChunkTask
    decoding: asyncio.Task[Decoded]

    def discard(self) -> None:
        self.decoding.cancel()
        # A decode that already failed: its error belongs to no attempt, mark it seen.
        self.decoding.add_done_callback(lambda t: t.cancelled() or t.exception())


class JobObserver:
    """Hooks for metrics and logs. The default logs one JSON-friendly line per event."""

    def state_changed(self, record: JobRecord, **extra: Any) -> None:
        log.info("job %s", record.state.value, extra={"pose_job_id": record.id, "state": record.state.value,
                                                       "stage": record.stage, **extra})

    def chunk_done(self, record: JobRecord, receipt: ChunkReceipt) -> None:
        pass

    def chunk_retry(self, record: JobRecord, error: PipelineError) -> None:
        log.warning("job %s chunk %d retried after %s", record.id, record.chunks_done, error.code,
                    extra={"pose_job_id": record.id, "code": error.code})

    def queue_changed(self, queued: int, running: int) -> None:
        pass

    def upload_received(self, size: int) -> None:
        """``size`` bytes of an upload (or of one part of it) arrived."""

    def store_changed(self) -> None:
        """Files of the store may have been added or removed (housekeeping, expiry)."""


#: Why the runner with this owner id stopped, as the error to report for the attempts it
#: left unfinished; None when unknown.
DeathCause = Callable[[str], "PipelineError | None"]


class JobRunner:
    """Runs this replica's jobs; at most ``max_running`` at once, ``max_queued`` waiting.

    ``death_cause`` is asked about the runner a job is adopted from, so that a job whose
    runners all died (e.g. the node's memory monitor killed each one) fails with the cause
    rather than with ``worker_died``."""

    def __init__(self, store: JobStore, stages: Stages, settings: JobSettings, owner: str,
                 observer: JobObserver | None = None, death_cause: DeathCause | None = None) -> None:
        self.store = store
        self.stages = stages
        self.settings = settings
        self.owner = owner
        self.observer = observer or JobObserver()
        self.death_cause = death_cause
        self._inherited_causes: dict[str, PipelineError] = {}  # job id -> why its last runner died
        self._slots = asyncio.Semaphore(settings.max_running)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._running = 0
        self._background: list[asyncio.Task[None]] = []

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the lease keeper and the orphan collector (call inside the event loop)."""
        self._background = [asyncio.create_task(self._keep_leases()),
                            asyncio.create_task(self._adopt_orphans())]

    async def stop(self) -> None:
        for task in [*self._background, *self._tasks.values()]:
            task.cancel()
        await asyncio.gather(*self._background, *self._tasks.values(), return_exceptions=True)

    @property
    def active(self) -> int:
        return len(self._tasks)

    # --- API -------------------------------------------------------------------------------

    def admit(self) -> None:
        """Raise ``Overloaded`` if a new job would pass the queue bound."""
        if len(self._tasks) >= self.settings.max_running + self.settings.max_queued:
            raise Overloaded(f"{len(self._tasks)} jobs are queued or running; try again later",
                             retry_after_s=self._retry_after())

    def submit(self, record: JobRecord) -> None:
        self.admit()
        self.store.claim(record.id, self.owner, self.settings.lease_s)
        self._spawn(record.id)

    async def wait(self, job_id: str, poll_s: float = 0.2) -> JobRecord:
        """The job's record once it has ended (whichever runner ran it)."""
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.shield(task)
        while True:
            record = self.store.get(job_id)
            if record.state.terminal:
                return record
            await asyncio.sleep(poll_s)

    async def cancel(self, job_id: str) -> JobRecord:
        """Stop the job's work (here, or on whichever runner has it) and delete its files."""
        record = self.store.get(job_id)
        if record.state.terminal:
            return record
        self.store.update(job_id, cancel_requested=True)
        task = self._tasks.get(job_id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        else:  # another runner has it: it sees the flag before its next chunk
            deadline = time.monotonic() + self.settings.chunk_timeout_s
            while not self.store.get(job_id).state.terminal and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
        return self.store.get(job_id)

    # --- the work --------------------------------------------------------------------------

    def _spawn(self, job_id: str) -> None:
        task = asyncio.create_task(self._run(job_id), name=f"job-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._forget(job_id))
        self._report_queue()

    def _forget(self, job_id: str) -> None:
        self._tasks.pop(job_id, None)
        self._inherited_causes.pop(job_id, None)
        self._report_queue()

    async def _run(self, job_id: str) -> None:
        started = time.monotonic()
        try:
            async with self._slots:
                self._running += 1
                self._report_queue()
                try:
                    await self._process(job_id)
                finally:
                    self._running -= 1
        except asyncio.CancelledError:
            if self.store.get(job_id).cancel_requested:
                self._end(job_id, JobState.cancelled, JobCancelled("the job was cancelled"), started)
            raise  # a runner shutting down leaves the job for another one to adopt
        except PipelineError as exc:
            self._end(job_id, JobState.failed, exc, started)
        except Exception as exc:  # a bug: report it as such rather than hanging the client
            self._end(job_id, JobState.failed, unexpected(exc, f"the job runner (job {job_id})"), started)
        else:
            self._end(job_id, JobState.succeeded, None, started)
        finally:
            self._report_queue()

    async def _process(self, job_id: str) -> None:
        record = self.store.get(job_id)
        if record.state.terminal:
            return
        if record.state is JobState.queued:
            record = self.store.update(job_id, state=JobState.running, started_at=time.time(),
                                       stage=JobStage.tracking)
            self.observer.state_changed(record)
        video, decoding = record.video, record.decoding
        cursor = record.cursor or DecodeCursor()
        is_last = record.decoded_all
        ahead: _Ahead | None = None
        try:
            while not is_last:
                task = ChunkTask(job_id=job_id, chunk_index=record.chunks_done, cursor=cursor, video=video,
                                 decoding=decoding, engine=record.engine, filename=record.filename,
                                 vertices=record.options.vertices)
                if ahead is not None and (ahead.task.chunk_index, ahead.task.cursor) != (task.chunk_index, cursor):
                    ahead.discard()
                    ahead = None
                receipt, ahead = await self._run_chunk(record, task, ahead)
                record = self.store.get(job_id)
                cursor, is_last = receipt.cursor, receipt.is_last
                self.observer.chunk_done(record, receipt)
        finally:
            if ahead is not None:
                ahead.discard()
        record = self.store.update(job_id, stage=JobStage.aggregation)
        results = await self._finalize(job_id)
        self.store.update(job_id, results=results)

    async def _finalize(self, job_id: str) -> dict[str, int]:
        """Write the result files, again after a retryable failure (an aggregation replica that
        died, e.g. while rendering a long overlay MP4): finalizing reads only committed chunks
        and publishes each file whole, so a second run starts from scratch and loses nothing."""
        attempt = 0
        while True:
            try:
                return await self.stages.finalize(job_id)
            except PipelineError as error:
                if not error.retryable or attempt == self.settings.max_chunk_retries:
                    raise
                attempt += 1
                record = self.store.update(job_id, retries=self.store.get(job_id).retries + 1)
                self.observer.chunk_retry(record, error)
                await asyncio.sleep(RETRY_PAUSE_S * attempt)

    async def _run_chunk(self, record: JobRecord, task: ChunkTask,
                         ahead: _Ahead | None) -> tuple[ChunkReceipt, _Ahead | None]:
        """Run one chunk to its commit, with retries; returns its receipt and the next chunk,
        decoding meanwhile."""
        interrupted = record.chunk_attempts  # attempts by a runner that died before they ended
        cause = self._inherited_causes.get(record.id)
        if interrupted:
            record = self.store.update(record.id, retries=record.retries + 1)
            self.observer.chunk_retry(record, cause or WorkerDied("the job's runner died"))
        for attempt in range(interrupted, self.settings.max_chunk_retries + 1):
            if self.store.get(record.id).cancel_requested:
                raise asyncio.CancelledError
            self.store.update(record.id, chunk_attempts=attempt + 1)
            try:
                receipt, following = await asyncio.wait_for(self._attempt(replace(task, attempt=attempt), ahead),
                                                            self.settings.chunk_timeout_s)
                if attempt:  # the commit reset the count, unless the chunk was committed before
                    self.store.update(record.id, chunk_attempts=0)
                return receipt, following
            except asyncio.TimeoutError:
                error: PipelineError = ChunkTimeout(
                    f"chunk {task.chunk_index} took longer than {self.settings.chunk_timeout_s:.0f} s "
                    "(jobs.chunk_timeout_s)", chunk=task.chunk_index, limit_s=self.settings.chunk_timeout_s)
            except PipelineError as exc:
                error = exc
            ahead = None  # the failed attempt discarded it; a retry decodes again
            if isinstance(error, WorkerDied) and cause is not None:
                # The node's memory monitor, which killed the earlier runners, took (or starved)
                # this attempt's workers too: that is the job's error.
                error = cause
            if not error.retryable or attempt == self.settings.max_chunk_retries:
                raise error.at_chunk(task.chunk_index, attempt + 1)
            record = self.store.update(record.id, retries=self.store.get(record.id).retries + 1)
            self.observer.chunk_retry(record, error)
            await asyncio.sleep(RETRY_PAUSE_S * (attempt + 1))  # let a replacement replica start
        # Every attempt was cut short by the death of the runner itself (its ingress replica,
        # e.g. killed by the node's memory monitor along with the workers).
        if cause is not None:
            raise replace(cause, chunk=task.chunk_index, attempts=interrupted)
        raise WorkerDied(f"chunk {task.chunk_index} was attempted {interrupted} times and each time the job's "
                         "runner (an ingress replica) died before the attempt ended; this happens when the "
                         "node runs out of memory: use a smaller max_side or chunk, or more memory",
                         chunk=task.chunk_index, attempts=interrupted)

    async def _attempt(self, task: ChunkTask, ahead: _Ahead | None) -> tuple[ChunkReceipt, _Ahead | None]:
        """Decode the chunk (or take it from ``ahead``), start decoding the next one (with
        ``decode_ahead``), track this one: decoding overlaps tracking, and at most one chunk
        per job waits decoded."""
        following: _Ahead | None = None
        try:
            decoded = await (ahead.decoding if ahead is not None else self.stages.decode(task))
            if self.settings.decode_ahead and not decoded.is_last:
                upcoming = replace(task, chunk_index=task.chunk_index + 1, cursor=decoded.cursor, attempt=0)
                following = _Ahead(upcoming, asyncio.create_task(self.stages.decode(upcoming)))
            return await self.stages.track(decoded), following
        except BaseException:
            for pending in (ahead, following):
                if pending is not None:
                    pending.discard()
            raise

    def _end(self, job_id: str, state: JobState, error: PipelineError | None, started: float) -> None:
        now = time.time()
        record = self.store.update(
            job_id, state=state, stage=JobStage(state.value), finished_at=now, expires_at=now + self.settings.ttl_s,
            error=None if error is None else JobError.of(error), owner=None, lease_until=0.0)
        self.store.discard_work_files(job_id, keep_results=state is JobState.succeeded)
        self.observer.state_changed(record, duration_s=round(time.monotonic() - started, 3),
                                    code=None if error is None else error.code)

    # --- background ------------------------------------------------------------------------

    async def _keep_leases(self) -> None:
        while True:
            for job_id in list(self._tasks):
                self.store.claim(job_id, self.owner, self.settings.lease_s)
            await asyncio.sleep(self.settings.lease_s / 3)

    async def _adopt_orphans(self) -> None:
        while True:
            for job_id in self.store.orphans(time.time()):
                if job_id in self._tasks or len(self._tasks) >= self.settings.max_running + self.settings.max_queued:
                    continue
                previous = self.store.get(job_id).owner
                if self.store.claim(job_id, self.owner, self.settings.lease_s, steal=True):
                    cause = await asyncio.to_thread(self.death_cause, previous) \
                        if self.death_cause and previous else None
                    log.warning("job %s adopted after its runner stopped (%s)", job_id,
                                cause.code if cause else "cause unknown", extra={"pose_job_id": job_id})
                    if cause is not None:
                        self._inherited_causes[job_id] = cause
                    self._spawn(job_id)
            self.store.expire(time.time())
            await asyncio.sleep(max(1.0, self.settings.lease_s / 3))

    def _report_queue(self) -> None:
        self.observer.queue_changed(queued=len(self._tasks) - self._running, running=self._running)

    def _retry_after(self) -> int:
        return RETRY_AFTER_S
