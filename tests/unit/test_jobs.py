"""The job store and the job runner, in one process: a real SQLite store in a tmp folder, the
real stages (decode with PyAV, the motion engine, aggregation) over a real generated video.

Failures are injected by ``ScriptedStages``, a ``jobs.Stages`` that wraps the real stages and
raises or sleeps at one chunk; the code under test (runner, store, stages) is not replaced.
Every successful job is compared with ``pipeline.track_file`` on the same video and options.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pose_pipeline.jobs.messages import ChunkReceipt, ChunkTask, DecodedChunk
from pose_pipeline.config import JobSettings, Settings
from pose_pipeline.engines.faults import FaultInjector, FaultSpec, FaultyEngine
from pose_pipeline.engines.motion import MotionEngine
from pose_pipeline.engines.registry import EngineRegistry
from pose_pipeline.errors import (CorruptVideo, GpuOutOfMemory, HostOutOfMemory, InvalidOption, Overloaded,
                                  PipelineError, WorkerDied)
from pose_pipeline.jobs.runner import JobRunner
from pose_pipeline.jobs.memguard import MemoryGuard
from pose_pipeline.pipeline import JobOptions, decode_options, expected_frames, video_spec
from pose_pipeline.jobs.stages import AggregationStage, DecodeStage, LocalStages, TrackingStage
from pose_pipeline.jobs.store import JobRecord, JobState, LocalJobStore, new_job_id
from pose_pipeline.video import ChunkDecoder, probe

OPTIONS = JobOptions(formats=("json",))
CHUNKS = 6  # the 2 s demo video at 30 fps in chunks of demo.CHUNK_FRAMES
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def video(demo, tmp_path_factory) -> Path:
    return demo.demo_video(tmp_path_factory.mktemp("video") / "walk.mp4")


@pytest.fixture(scope="module")
def reference(demo, settings, video, tmp_path_factory) -> dict:
    """The offline pipeline's JSON result for the video, as a document."""
    return demo.load_json(demo.reference_result(video, tmp_path_factory.mktemp("reference"), settings, OPTIONS))


@pytest.fixture(scope="module")
def settings(demo) -> Settings:
    """Chunks of ``demo.CHUNK_FRAMES`` frames of the demo video, the motion engine."""
    return demo.small_settings()


@pytest.fixture
def store(tmp_path) -> LocalJobStore:
    return LocalJobStore(tmp_path / "store")


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def new_job(settings) -> Callable[..., JobRecord]:
    """``new_job(store, video, options=OPTIONS)``: a queued job for a copy of ``video``,
    created as the job service creates one."""
    def create(store: LocalJobStore, video: Path, options: JobOptions = OPTIONS) -> JobRecord:
        upload = store.new_upload_path()
        shutil.copyfile(video, upload)
        probed = probe(upload, settings.limits)
        decoding = decode_options(settings, options)
        now = time.time()
        record = JobRecord(id=new_job_id(), state=JobState.queued, created_at=now, updated_at=now,
                           filename=video.name, options=options, video=probed,
                           frames_total=expected_frames(probed, decoding), engine="motion", decoding=decoding)
        return store.create(record, upload)
    return create


def local_stages(store: LocalJobStore, faults: FaultInjector | None = None) -> LocalStages:
    """The three real stages in this process, as a fresh replica would have them (with the
    motion engine, or with it wrapped in ``faults``)."""
    engine = MotionEngine() if faults is None else FaultyEngine(MotionEngine(), faults)
    return LocalStages(DecodeStage(store), TrackingStage(engine, store), AggregationStage(store))


class ScriptedStages:
    """Real stages, with ``error()`` raised ``times`` times at chunk ``at`` (before the
    chunk is tracked, or after it was committed: the reply lost on the way back; or, with
    ``in_decode``, when it is decoded), and/or ``sleep_s`` spent there first. Records the
    chunk index of every track call, and every call in order."""

    def __init__(self, inner: LocalStages, at: int | None = None, error=None, times: int = 0,
                 after_commit: bool = False, sleep_s: float = 0.0, in_decode: bool = False) -> None:
        self.inner, self.at, self.error, self.times = inner, at, error, times
        self.after_commit, self.sleep_s, self.in_decode = after_commit, sleep_s, in_decode
        self.calls: list[int] = []  # chunk index of every track call
        self.events: list[tuple[str, int]] = []
        self.reached = asyncio.Event()

    async def decode(self, task: ChunkTask) -> DecodedChunk:
        self.events.append(("decode", task.chunk_index))
        if self.in_decode and task.chunk_index == self.at and self.events.count(("decode", self.at)) <= self.times:
            raise self.error(f"injected when decoding chunk {task.chunk_index}")
        return await self.inner.decode(task)

    async def track(self, decoded: DecodedChunk) -> ChunkReceipt:
        task = decoded.task
        self.calls.append(task.chunk_index)
        self.events.append(("track", task.chunk_index))
        scripted = task.chunk_index == self.at and not self.in_decode
        if scripted:
            self.reached.set()
        await asyncio.sleep(self.sleep_s if scripted else 0)  # let the runner decode ahead meanwhile
        failing = scripted and self.calls.count(self.at) <= self.times
        if failing and not self.after_commit:
            raise self.error(f"injected at chunk {task.chunk_index}")
        receipt = await self.inner.track(decoded)
        self.events.append(("committed", task.chunk_index))
        if failing:
            raise self.error(f"injected after committing chunk {task.chunk_index}")
        return receipt

    async def finalize(self, job_id: str) -> dict[str, int]:
        return await self.inner.finalize(job_id)


def job_settings(**changes) -> JobSettings:
    return JobSettings(**{"max_chunk_retries": 2, "lease_s": 30.0, **changes})


def run_job(store: LocalJobStore, stages, record: JobRecord, **settings) -> JobRecord:
    """Submit the job to a new runner and return its final record."""
    async def main() -> JobRecord:
        runner = JobRunner(store, stages, job_settings(**settings), owner="runner-test")
        runner.submit(record)
        return await runner.wait(record.id)
    return asyncio.run(main())


def assert_succeeded_with(store: LocalJobStore, record: JobRecord, reference: dict) -> None:
    assert (record.state, record.error) == (JobState.succeeded, None)
    assert (record.chunks_done, record.frames_done, record.decoded_all) == (CHUNKS, 60, True)
    path = store.result_path(record.id, "json")
    assert json.loads(path.read_text()) == reference
    assert record.results == {"json": path.stat().st_size}
    job_dir = store.result_dir(record.id)
    # work files discarded; kept: the result, the viewer's files beside it, the upload (the viewer plays it)
    assert sorted(p.name for p in job_dir.iterdir()) == ["frames.index.npy", "result.json", "timeline.json", "upload"]


def assert_failed(store: LocalJobStore, record: JobRecord, code: str, **details) -> None:
    assert record.state is JobState.failed
    assert record.error.code == code
    assert {k: record.error.details[k] for k in details} == details
    assert not store.result_dir(record.id).exists()


# --- runner ------------------------------------------------------------------------------------


def test_job_result_equals_the_offline_pipeline(new_job, store, video, reference):
    stages = ScriptedStages(local_stages(store))
    record = run_job(store, stages, new_job(store, video))
    assert_succeeded_with(store, record, reference)
    assert stages.calls == list(range(CHUNKS))
    assert record.started_at <= record.finished_at < record.expires_at and record.owner is None


def test_the_next_chunk_is_decoded_while_this_one_is_tracked(new_job, store, video, reference):
    stages = ScriptedStages(local_stages(store))
    assert_succeeded_with(store, run_job(store, stages, new_job(store, video)), reference)
    events = stages.events
    assert [i for kind, i in events if kind == "decode"] == list(range(CHUNKS))  # each chunk once
    for i in range(CHUNKS - 1):
        # Chunk i + 1 is asked for once chunk i is decoded and before chunk i is committed,
        # and chunk i + 2 not before chunk i is committed: one chunk ahead at most.
        assert events.index(("track", i)) < events.index(("decode", i + 1)) < events.index(("committed", i))
        if i + 2 < CHUNKS:
            assert events.index(("committed", i)) < events.index(("decode", i + 2))


def test_without_decode_ahead_the_stages_run_one_after_the_other(new_job, store, video, reference):
    stages = ScriptedStages(local_stages(store))
    assert_succeeded_with(store, run_job(store, stages, new_job(store, video), decode_ahead=False), reference)
    assert stages.events == [(kind, i) for i in range(CHUNKS) for kind in ("decode", "track", "committed")]


@pytest.mark.parametrize("error, expected", [(CorruptVideo, "corrupt_video"), (WorkerDied, None)])
def test_a_failed_decode_ahead_counts_against_its_own_chunk(new_job, store, video, reference, error, expected):
    stages = ScriptedStages(local_stages(store), at=3, error=error, times=1, in_decode=True)
    record = run_job(store, stages, new_job(store, video), max_chunk_retries=2)
    if expected is None:  # retried: the same result as without the failure
        assert_succeeded_with(store, record, reference)
        assert stages.events.count(("decode", 3)) == 2 and record.retries == 1
    else:  # chunks 0-2 were committed first; chunk 3 fails on its first attempt
        assert_failed(store, record, expected, chunk=3, attempts=1)
        assert stages.calls == [0, 1, 2] and record.chunks_done == 3


@pytest.mark.parametrize("after_commit", [False, True], ids=["before-commit", "reply-lost"])
@pytest.mark.slow
def test_retryable_failures_within_the_budget_give_the_same_result(new_job, store, video, reference, after_commit):
    stages = ScriptedStages(local_stages(store), at=2, error=WorkerDied, times=2, after_commit=after_commit)
    record = run_job(store, stages, new_job(store, video), max_chunk_retries=2)
    assert_succeeded_with(store, record, reference)
    assert stages.calls == [0, 1, 2, 2, 2, 3, 4, 5]
    assert record.retries == 2


@pytest.mark.slow
def test_a_stage_queue_full_inside_a_job_is_retried_with_the_same_result(new_job, store, video, reference):
    # Serve's max_queued_requests refusing a chunk is load, not a fault of the work: retried
    # after a pause (docs/api.md, overloaded), not the job's end.
    stages = ScriptedStages(local_stages(store), at=1, error=Overloaded, times=1)
    record = run_job(store, stages, new_job(store, video), max_chunk_retries=2)
    assert_succeeded_with(store, record, reference)
    assert stages.calls == [0, 1, 1, 2, 3, 4, 5] and record.retries == 1


class FailingFinalize(ScriptedStages):
    """Real stages whose ``finalize`` raises ``error()`` its first ``times`` calls (e.g. the
    aggregation replica died while it rendered the overlay MP4)."""

    def __init__(self, inner: LocalStages, error, times: int) -> None:
        super().__init__(inner)
        self.finalize_error, self.finalize_times, self.finalizes = error, times, 0

    async def finalize(self, job_id: str) -> dict[str, int]:
        self.finalizes += 1
        if self.finalizes <= self.finalize_times:
            raise self.finalize_error(f"injected in finalize call {self.finalizes}")
        return await self.inner.finalize(job_id)


@pytest.mark.slow  # the retries' pauses
@pytest.mark.parametrize("error, times, outcome", [(WorkerDied, 2, "succeeded"), (WorkerDied, 3, "worker_died"),
                                                   (InvalidOption, 1, "invalid_option")])
def test_finalize_is_run_again_after_a_retryable_failure(new_job, store, video, reference, error, times, outcome):
    stages = FailingFinalize(local_stages(store), error, times)
    record = run_job(store, stages, new_job(store, video), max_chunk_retries=2)
    if outcome == "succeeded":  # every chunk once, the result written on the third try, as without failures
        assert_succeeded_with(store, record, reference)
        assert (stages.finalizes, record.retries, stages.calls) == (3, 2, list(range(CHUNKS)))
    else:  # past the budget, or not retryable: the job fails with the error, no retry of the latter
        assert_failed(store, record, outcome)
        assert stages.finalizes == (3 if error is WorkerDied else 1)


@pytest.mark.slow
def test_retryable_failures_past_the_budget_fail_the_job(new_job, store, video):
    stages = ScriptedStages(local_stages(store), at=2, error=WorkerDied, times=3)
    record = run_job(store, stages, new_job(store, video), max_chunk_retries=2)
    assert_failed(store, record, "worker_died", chunk=2, attempts=3)
    assert stages.calls == [0, 1, 2, 2, 2]


def test_a_non_retryable_error_fails_at_once(new_job, store, video):
    stages = ScriptedStages(local_stages(store), at=1, error=CorruptVideo, times=1)
    record = run_job(store, stages, new_job(store, video), max_chunk_retries=2)
    assert_failed(store, record, "corrupt_video", chunk=1, attempts=1)
    assert stages.calls == [0, 1]


@pytest.mark.slow
def test_a_chunk_past_its_deadline_fails_with_timeout_after_retries(new_job, store, video):
    # Chunk 0 hangs: no real work has to beat the short deadline, however busy the machine.
    stages = ScriptedStages(local_stages(store), at=0, sleep_s=30.0)
    started = time.monotonic()
    record = run_job(store, stages, new_job(store, video), chunk_timeout_s=0.3, max_chunk_retries=1)
    assert time.monotonic() - started < 10
    assert_failed(store, record, "timeout", chunk=0, attempts=2, limit_s=0.3)
    assert stages.calls == [0, 0]


def test_cancel_ends_a_running_job_and_removes_its_files(new_job, store, video):
    stages = ScriptedStages(local_stages(store), at=2, sleep_s=30.0)
    record = new_job(store, video)

    async def main() -> JobRecord:
        runner = JobRunner(store, stages, job_settings(), owner="runner-test")
        runner.submit(record)
        await asyncio.wait_for(stages.reached.wait(), 20)
        assert store.get(record.id).state is JobState.running
        return await runner.cancel(record.id)

    ended = asyncio.run(main())
    assert (ended.state, ended.error.code) == (JobState.cancelled, "cancelled")
    assert not store.result_dir(record.id).exists()
    assert stages.calls == [0, 1, 2]


def test_admission_refuses_past_running_plus_queued(new_job, store, video):
    async def main() -> None:
        stages = ScriptedStages(local_stages(store), at=0, sleep_s=30.0)
        runner = JobRunner(store, stages, job_settings(max_running=1, max_queued=1), owner="runner-test")
        runner.submit(new_job(store, video))
        runner.submit(new_job(store, video))
        try:
            with pytest.raises(Overloaded) as info:
                runner.submit(new_job(store, video))
            assert info.value.status == 503 and info.value.details["retry_after_s"] > 0
            assert runner.active == 2
        finally:
            await runner.stop()

    asyncio.run(main())


@pytest.mark.slow
def test_a_job_left_by_a_dead_runner_is_adopted_and_resumed(new_job, store, video, reference):
    record = new_job(store, video)
    settings = job_settings(lease_s=0.5)

    async def main() -> JobRecord:
        first = ScriptedStages(local_stages(store), at=2, sleep_s=3600.0)  # "dies" during chunk 2
        dead = JobRunner(store, first, settings, owner="dead")
        dead.submit(record)
        await asyncio.wait_for(first.reached.wait(), 20)
        await dead.stop()  # stops without ending the job: it stays running with its lease
        left = store.get(record.id)
        assert (left.state, left.owner, left.chunks_done) == (JobState.running, "dead", 2)

        second = ScriptedStages(local_stages(store))  # a fresh replica: no cached decoder or session
        heir = JobRunner(store, second, settings, owner="heir")
        heir.start()
        try:
            ended = await asyncio.wait_for(heir.wait(record.id, poll_s=0.05), 20)
        finally:
            await heir.stop()
        assert second.calls == [2, 3, 4, 5]  # resumed from the checkpoint after chunk 1
        return ended

    assert_succeeded_with(store, asyncio.run(main()), reference)


def run_with_dying_runners(store: LocalJobStore, record: JobRecord, settings: JobSettings, deaths: int,
                           heir_stages: ScriptedStages, death_cause) -> JobRecord:
    """``deaths`` runners in turn each "die" during chunk 2 (as when the node's memory monitor
    kills the ingress with the workers); then an heir adopts the job with ``heir_stages``."""
    async def main() -> JobRecord:
        for number in range(deaths):
            stages = ScriptedStages(local_stages(store), at=2, sleep_s=3600.0)
            runner = JobRunner(store, stages, settings, owner=f"runner-{number}", death_cause=death_cause)
            if number == 0:
                runner.submit(record)
            else:
                runner.start()  # adopts the job once the previous runner's lease has expired
            await asyncio.wait_for(stages.reached.wait(), 20)
            await runner.stop()
        heir = JobRunner(store, heir_stages, settings, owner="heir", death_cause=death_cause)
        heir.start()
        try:
            return await asyncio.wait_for(heir.wait(record.id, poll_s=0.05), 20)
        finally:
            await heir.stop()
    return asyncio.run(main())


@pytest.mark.parametrize("known_cause", [False, True], ids=["cause-unknown", "killed-for-memory"])
@pytest.mark.slow
def test_attempts_by_runners_that_died_count_against_the_retry_budget(new_job, store, video, known_cause):
    # The runner that adopts the job after the last attempt gives up, with the cause of its
    # predecessor's death when that is known.
    settings = job_settings(lease_s=0.5)
    asked: list[str] = []

    def death_cause(owner: str) -> PipelineError | None:
        asked.append(owner)
        return HostOutOfMemory("killed by the memory monitor", kind="node") if known_cause else None

    ended = run_with_dying_runners(store, new_job(store, video), settings, settings.max_chunk_retries + 1,
                                   ScriptedStages(local_stages(store)), death_cause)
    assert ended.state is JobState.failed
    assert ended.error.code == ("out_of_memory" if known_cause else "worker_died")
    assert ended.error.details["chunk"] == 2 and ended.error.details["attempts"] == settings.max_chunk_retries + 1
    assert ended.retries == settings.max_chunk_retries + 1
    assert asked == [f"runner-{n}" for n in range(settings.max_chunk_retries + 1)]  # each heir asks once


@pytest.mark.parametrize("known_cause", [False, True], ids=["cause-unknown", "killed-for-memory"])
@pytest.mark.slow
def test_a_worker_death_after_runners_died_for_memory_reports_the_memory(new_job, store, video, known_cause):
    # Two runners die; the heir's attempt, the last one, fails with worker_died (under node
    # memory pressure the workers die, or lose the objects they held): when the earlier
    # runners were killed for memory, that is what the job reports.
    settings = job_settings(lease_s=0.5)
    cause = HostOutOfMemory("killed by the memory monitor", kind="node")
    ended = run_with_dying_runners(store, new_job(store, video), settings, settings.max_chunk_retries,
                                   ScriptedStages(local_stages(store), at=2, error=WorkerDied, times=1),
                                   lambda owner: cause if known_cause else None)
    assert ended.state is JobState.failed
    assert ended.error.code == ("out_of_memory" if known_cause else "worker_died")
    assert ended.error.details["chunk"] == 2 and ended.error.details["attempts"] == settings.max_chunk_retries + 1


# --- fault injection and memory guard ------------------------------------------------------------


def test_fault_injector_fires_the_configured_number_of_times_across_replicas(tmp_path):
    faults = (FaultSpec(kind="raise", chunk=1, times=2, filename="a.mp4"), FaultSpec(kind="exit", chunk=3))
    first, second = FaultInjector(faults, tmp_path), FaultInjector(faults, tmp_path)
    assert first.take("a.mp4", 0) is None and first.take("b.mp4", 1) is None
    assert first.take("a.mp4", 1) is faults[0]
    assert second.take("a.mp4", 1) is faults[0]
    assert first.take("a.mp4", 1) is None and second.take("a.mp4", 1) is None
    assert second.take("b.mp4", 3) is faults[1]  # no filename: any upload
    assert first.take("a.mp4", 3) is None


@pytest.mark.slow
def test_gpu_oom_with_room_to_halve_gives_the_unfaulted_result(new_job, store, video, reference, tmp_path):
    faults = FaultInjector((FaultSpec(kind="gpu_oom", chunk=1, above_batch=2, times=5),), tmp_path / "faults")
    record = run_job(store, local_stages(store, faults), new_job(store, video))
    assert_succeeded_with(store, record, reference)
    assert len(list((tmp_path / "faults").iterdir())) == 1  # fired once: at chunk 1 of this job


@pytest.mark.slow
def test_gpu_oom_at_a_single_frame_raises(settings, video):
    decoding = decode_options(settings, OPTIONS)
    probed = probe(video)
    session = MotionEngine().open(video_spec(probed, decoding))
    with ChunkDecoder(video, probed, decoding) as decoder:
        chunk = decoder.next_chunk()
    with pytest.raises(GpuOutOfMemory) as info:
        FaultInjector.process(FaultSpec(kind="gpu_oom", above_batch=0), session, chunk)
    assert info.value.details["batch_size"] == 1
    assert info.value.status == 503 and not info.value.retryable


def test_the_fault_engine_comes_from_configuration_and_keeps_its_aim_across_a_restore(settings, video, tmp_path):
    # engine: faults wraps motion; a session restored from its state (a replacement replica)
    # still knows the upload's name, so a fault aimed at chunk 1 of that upload fires there.
    engine = EngineRegistry().create("faults", {
        "engine": "motion", "state_dir": str(tmp_path / "faults"),
        "faults": [{"kind": "raise", "chunk": 1, "filename": "aimed.mp4"}]})
    assert engine.info == MotionEngine().info and engine.holdback_frames == MotionEngine().holdback_frames
    decoding = decode_options(settings, OPTIONS)
    probed = probe(video)
    with ChunkDecoder(video, probed, decoding) as decoder:
        first, second = decoder.next_chunk(), decoder.next_chunk()
    for name, fires in (("other.mp4", False), ("aimed.mp4", True)):
        session = engine.open(video_spec(probed, decoding, name))
        unfaulted = MotionEngine().open(video_spec(probed, decoding, name))
        assert session.process(first).frames[0].people == unfaulted.process(first).frames[0].people
        restored = engine.restore(session.export_state())
        if fires:
            with pytest.raises(RuntimeError, match="injected fault"):
                restored.process(second)
        else:
            assert len(restored.process(second).frames) == len(second)
    with pytest.raises(InvalidOption, match="fault injection"):
        EngineRegistry().create("faults", {"engine": "motion", "state_dir": str(tmp_path), "faults": [{"kind": "x"}]})


def hoard_memory(step: int = 64 * MiB, give_up: int = 3 * 1024 * MiB) -> None:
    """Allocate and touch memory until stopped, as a leaking model would; fail past ``give_up``."""
    hoard = []
    while len(hoard) * step < give_up:
        hoard.append(np.ones(step, dtype=np.uint8))
        time.sleep(0.01)
    raise AssertionError("the memory guard did not stop the allocation")


@pytest.mark.slow
def test_memory_guard_stops_a_runaway_chunk_and_its_memory_is_released():
    base = MemoryGuard(None).rss()
    guard = MemoryGuard(base + 384 * MiB, interval_s=0.01)
    with pytest.raises(HostOutOfMemory) as info:
        with guard.watch():
            hoard_memory()
    error = info.value
    assert error.retryable and error.code == "out_of_memory"
    assert error.details["limit_bytes"] == base + 384 * MiB and error.details["kind"] == "host"
    assert error.details["used_bytes"] > error.details["limit_bytes"]
    assert "tracking.memory_limit_bytes" in error.message
    assert guard.rss() < base + 128 * MiB  # released, even while the error is still held
    with guard.watch():  # the guard is reusable and quiet under the limit
        np.ones(16 * MiB, dtype=np.uint8)


def test_states_and_stages_print_as_clients_see_them():
    """The progress bar and ``pose-pipeline jobs`` print them in f-strings."""
    from pose_pipeline.jobs.state import JobStage

    assert (f"{JobStage.tracking}", f"{JobState.running:8}|", str(JobStage.succeeded)) == (
        "tracking", "running |", "succeeded")
