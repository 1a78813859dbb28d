"""The ``JobStore`` contract, run against both stores: ``LocalJobStore`` (SQLite beside the
files) and ``PostgresJobStore`` (records in a real PostgreSQL server started for the session,
tests/support/postgres.py; files on the same kind of folder). Every test here runs once per
store; a store that passes them can replace the other behind the job service.

Several ingress replicas on one database, adopting each other's jobs after a kill, are in
test_multinode.py, with real Ray processes.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pose_pipeline.config import StoreSettings
from pose_pipeline.errors import InvalidOption, JobError, JobNotFound, StoreUnavailable
from pose_pipeline.options import JobOptions
from pose_pipeline.jobs.state import JobStage
from pose_pipeline.jobs.store import JobRecord, JobState, JobStore, LocalJobStore, new_job_id, open_store
from pose_pipeline.jobs.store.base import DuplicateKey
from pose_pipeline.video import DecodeCursor, DecodeOptions, probe

STORES = ["sqlite", "postgres"]


@pytest.fixture(scope="module")
def video(media, tmp_path_factory) -> Path:
    return media.write_video(tmp_path_factory.mktemp("video") / "clip.mp4", size=(32, 32), frames=10)


@pytest.fixture(params=STORES)
def settings(request, tmp_path) -> StoreSettings:
    """The settings of a fresh store of each kind (a new folder; for PostgreSQL, a new database)."""
    database = request.getfixturevalue("postgres_server").new_database() if request.param == "postgres" else None
    return StoreSettings(root=str(tmp_path / "store"), database=database)


@pytest.fixture
def store(settings) -> Iterator[JobStore]:
    yield open_store(settings)


@pytest.fixture
def new_job(video) -> Callable[[JobStore], JobRecord]:
    def create(store: JobStore, state: JobState = JobState.queued, created_at: float | None = None) -> JobRecord:
        upload = store.new_upload_path()
        shutil.copyfile(video, upload)
        probed = probe(upload)
        now = time.time() if created_at is None else created_at
        record = JobRecord(id=new_job_id(), state=state, created_at=now, updated_at=now, filename="clip.mp4",
                           options=JobOptions(fps=5, formats=("json",)), video=probed, frames_total=10,
                           engine="motion", decoding=DecodeOptions(fps=5))
        return store.create(record, upload)
    return create


def test_the_settings_choose_the_store(settings, store):
    assert type(store).__name__ == ("PostgresJobStore" if settings.database else "LocalJobStore")
    assert isinstance(store, LocalJobStore)  # the files are handled alike


def test_create_get_update_round_trip_every_field(new_job, store, video):
    record = new_job(store)
    assert store.get(record.id) == record
    assert list(Path(store.new_upload_path()).parent.iterdir()) == []  # the upload moved into the job
    assert store.upload_path(record.id).read_bytes() == video.read_bytes()
    error = JobError("x", "m", {"chunk": 2, "nested": {"a": [1.5]}})  # a code this version does not know: kept whole
    updated = store.update(record.id, stage=JobStage.tracking, error=error, state=JobState.running,
                           cancel_requested=True, cursor=DecodeCursor(next_chunk=3), results={"json": 12},
                           started_at=123.25, retries=4, chunk_attempts=2, owner="o")
    assert (updated.stage, updated.error, updated.state) == (JobStage.tracking, error, JobState.running)
    assert (updated.cancel_requested, updated.cursor, updated.results) == (True, DecodeCursor(next_chunk=3),
                                                                            {"json": 12})
    assert (updated.started_at, updated.retries, updated.chunk_attempts, updated.owner) == (123.25, 4, 2, "o")
    assert updated.updated_at >= record.updated_at and store.get(record.id) == updated
    assert store.update(record.id, owner=None, error=None).owner is None
    with pytest.raises(JobNotFound):
        store.get(new_job_id())
    with pytest.raises(JobNotFound):
        store.update(new_job_id(), stage=JobStage.tracking)


def test_a_second_store_on_the_same_settings_sees_the_same_jobs(new_job, settings, store):
    record = new_job(store)
    other = open_store(settings)  # another replica, or this one restarted
    assert other.get(record.id) == record
    other.update(record.id, stage="tracking")
    assert store.get(record.id).stage == "tracking"


@pytest.mark.parametrize("job_id", ["../jobs", "a/b", "..", "x.y", ""])
def test_ids_that_are_not_alphanumeric_are_refused(store, job_id):
    for call in (store.upload_path, store.result_dir, store.discard_work_files):
        with pytest.raises(JobNotFound):
            call(job_id)
    with pytest.raises(JobNotFound):
        store.result_path(job_id, "json")


def test_commit_chunk_is_idempotent_and_keeps_the_checkpoint_a_retry_needs(new_job, store):
    job = new_job(store).id
    cursor = DecodeCursor(next_chunk=1)
    store.update(job, chunk_attempts=2)
    first = store.commit_chunk(job, 0, b"out-0", b"state-1", cursor, frames=10, is_last=False)
    again = store.commit_chunk(job, 0, b"out-0", b"state-1", cursor, frames=10, is_last=False)
    assert (first.chunks_done, first.frames_done, first.cursor, first.chunk_attempts) == (1, 10, cursor, 0)
    assert (again.chunks_done, again.frames_done, again.decoded_all) == (1, 10, False)
    assert store.load_state(job, 0) is None and store.load_state(job, 1) == b"state-1"
    done = store.commit_chunk(job, 1, b"out-1", b"state-2", DecodeCursor(next_chunk=2), frames=5, is_last=True)
    assert (done.chunks_done, done.frames_done, done.decoded_all) == (2, 15, True)
    assert list(store.chunk_outputs(job)) == [b"out-0", b"out-1"]
    assert store.load_state(job, 2) == b"state-2"
    assert store.load_state(job, 1) == b"state-1"  # chunk 1 retried after its reply was lost
    assert store.commit_chunk(job, 1, b"out-1", b"state-2", DecodeCursor(next_chunk=2), 5, True).frames_done == 15


def test_concurrent_commits_of_one_chunk_count_it_once(new_job, store):
    # Two aggregation replicas commit the same retried chunk at once: the record advances once.
    job = new_job(store).id
    start = threading.Barrier(8)

    def commit(_: int) -> JobRecord:
        start.wait()
        return store.commit_chunk(job, 0, b"out-0", b"state-1", DecodeCursor(next_chunk=1), 10, False)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(commit, range(8)))
    assert (store.get(job).chunks_done, store.get(job).frames_done) == (1, 10)


def test_claim_steal_and_orphans(new_job, store):
    job = new_job(store).id
    assert store.claim(job, "a", 30)
    assert store.claim(job, "a", 30)  # renewal
    assert not store.claim(job, "b", 30)
    assert not store.claim(job, "b", 30, steal=True)
    assert store.orphans(time.time()) == []
    store.update(job, lease_until=time.time() - 1)  # a's runner died
    assert store.orphans(time.time()) == [job]
    assert store.claim(job, "b", 30, steal=True)
    assert not store.claim(job, "a", 30)
    assert store.get(job).owner == "b"
    store.update(job, state=JobState.succeeded, lease_until=0.0)
    assert store.orphans(time.time()) == []
    assert not store.claim(job, "b", 30)  # finished jobs are nobody's


def test_of_many_runners_stealing_an_orphan_at_once_one_wins(new_job, settings, store):
    job = new_job(store).id
    store.update(job, owner="dead", lease_until=time.time() - 1)
    stores = [open_store(settings) for _ in range(8)]  # a store each, as replicas have
    start = threading.Barrier(len(stores))

    def steal(number: int) -> bool:
        start.wait()
        return stores[number].claim(job, f"runner-{number}", 30, steal=True)

    with ThreadPoolExecutor(len(stores)) as pool:
        won = list(pool.map(steal, range(len(stores))))
    assert won.count(True) == 1
    assert store.get(job).owner == f"runner-{won.index(True)}"


def test_orphans_are_the_unfinished_jobs_with_expired_leases_oldest_first(new_job, store):
    now = time.time()
    older, newer, ended = (new_job(store, created_at=now - 10), new_job(store, created_at=now - 5),
                           new_job(store, JobState.failed, created_at=now - 20))
    for record in (older, newer, ended):
        store.update(record.id, lease_until=now - 1)
    store.update(newer.id, state=JobState.running)
    assert store.orphans(now) == [older.id, newer.id]


def test_recent_lists_the_newest_first_and_filters_by_state(new_job, store):
    now = time.time()
    ids = [new_job(store, created_at=now + i).id for i in range(3)]
    store.update(ids[1], state=JobState.succeeded)
    assert [r.id for r in store.recent(limit=2)] == [ids[2], ids[1]]
    assert [r.id for r in store.recent(limit=10, states=[JobState.succeeded])] == [ids[1]]


def test_discard_work_files_and_expire(new_job, store):
    kept, gone = new_job(store).id, new_job(store).id
    for job in (kept, gone):
        store.commit_chunk(job, 0, b"out", b"state", DecodeCursor(), 10, False)
        store.result_path(job, "json").write_text("{}")
        store.result_path(job, "npz").with_suffix(".npz.partial").write_bytes(b"half")
    store.discard_work_files(kept)
    left = sorted(p.name for p in store.result_dir(kept).iterdir())
    assert "result.json" in left and "chunks" not in left and not any(n.startswith("state-") for n in left)
    assert not any(n.endswith(".partial") for n in left)
    assert "upload" in left  # kept with the results: the viewer plays it until the job expires
    store.discard_work_files(gone, keep_results=False)
    assert not store.result_dir(gone).exists()

    now = time.time()
    store.update(kept, expires_at=now - 1)
    store.update(gone, expires_at=now + 3600)
    assert store.expire(now) == [kept]
    assert not store.result_dir(kept).exists()
    with pytest.raises(JobNotFound):
        store.get(kept)
    assert store.get(gone).id == gone


def test_delete_removes_record_and_files(new_job, store):
    job = new_job(store).id
    store.delete(job)
    with pytest.raises(JobNotFound):
        store.get(job)
    assert not store.result_dir(job).exists()


def test_usage_and_spool_cleaning(new_job, store):
    new_job(store)
    assert store.usage_bytes() > 0
    stale = store.new_upload_path()
    stale.write_bytes(b"abandoned")
    fresh = store.new_upload_path()
    fresh.write_bytes(b"arriving")
    old = time.time() - 7200
    import os

    os.utime(stale, (old, old))
    assert store.clean_spool(older_than_s=3600) == 1
    assert not stale.exists() and fresh.exists()


def test_connections_stay_bounded_however_many_threads_come_and_go(new_job, postgres_server, tmp_path):
    # A replica's worker threads come and go (thread pools, the web framework's): connections
    # must not grow with them, or the server's max_connections runs out under load.
    import psycopg

    from pose_pipeline.jobs.store.postgres import POOL_SIZE

    database = postgres_server.new_database()
    store = open_store(StoreSettings(root=str(tmp_path / "store"), database=database))
    job = new_job(store).id
    for _ in range(5):  # five generations of 12 threads, each reading and writing at once
        threads = [threading.Thread(target=lambda: store.update(job, owner=threading.current_thread().name))
                   for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    name = psycopg.conninfo.conninfo_to_dict(database)["dbname"]
    with psycopg.connect(postgres_server.dsn()) as admin:
        (count,) = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()
    assert 1 <= count <= POOL_SIZE, count


def test_a_root_that_is_not_the_volume_of_the_databases_jobs_is_refused(tmp_path, postgres_server, new_job):
    # Records shared through the database, files on a folder only this replica sees: the paths
    # the store would hand out could not be kept. The store refuses to start on such a root.
    database = postgres_server.new_database()
    shared = open_store(StoreSettings(root=str(tmp_path / "shared"), database=database))
    job = new_job(shared).id
    again = open_store(StoreSettings(root=str(tmp_path / "shared"), database=database))  # same volume: fine
    assert again.upload_path(job).is_file()
    with pytest.raises(InvalidOption) as info:
        open_store(StoreSettings(root=str(tmp_path / "local-disk"), database=database))
    assert info.value.option == "store.root" and "not the volume" in info.value.message
    other = open_store(StoreSettings(root=str(tmp_path / "other"), database=postgres_server.new_database()))
    with pytest.raises(InvalidOption):  # a volume that belongs to another database
        open_store(StoreSettings(root=str(tmp_path / "other"), database=database))
    assert other.recent() == []


def test_a_database_that_cannot_be_reached_is_a_typed_503(tmp_path, postgres_server):
    unreachable = StoreSettings(root=str(tmp_path / "store"), database=postgres_server.dsn("postgres")
                                .replace(f"port={postgres_server.port}", "port=1"))
    with pytest.raises(StoreUnavailable) as info:
        open_store(unreachable)
    assert info.value.status == 503 and info.value.retryable


def test_an_idempotency_key_is_unique_among_the_records(new_job, store, video):
    first = new_job(store)
    keyed = store.update(first.id, idempotency_key="k1", request_digest="d1")
    assert store.find_by_key("k1") == keyed and store.find_by_key("k2") is None
    upload = store.new_upload_path()
    shutil.copyfile(video, upload)
    now = time.time()
    second = JobRecord(id=new_job_id(), state=JobState.queued, created_at=now, updated_at=now, filename="clip.mp4",
                       options=JobOptions(), video=keyed.video, frames_total=10, engine="motion", idempotency_key="k1")
    with pytest.raises(DuplicateKey):
        store.create(second, upload)
    with pytest.raises(JobNotFound):
        store.get(second.id)
    assert not (store.jobs / second.id).exists()  # nothing of the refused job is left
