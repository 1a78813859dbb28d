"""The work of each service stage on one chunk, without Ray.

Each deployment in ``deployments/`` wraps one of these classes; ``LocalStages`` chains them
in one process (tests, and the reference the service is compared with).

Stages are stateless between calls as far as correctness goes: a decoder or tracker
session left open from the previous chunk of the same job is reused when the cursor
matches, and anything else is rebuilt from the task and the store. So any replica can
take any chunk, and a replacement replica resumes where the dead one stopped.
"""

from __future__ import annotations

import asyncio
import pickle
import time
from collections.abc import Awaitable, Hashable
from dataclasses import replace
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from ..results.assembly import ResultAssembler
from .messages import ChunkReceipt, ChunkTask, Decoded, DecodedChunk, StoredChunk, TrackedChunk
from ..config import Limits, Settings
from ..engines.base import Engine, Session
from ..errors import InternalError, JobCancelled, JobNotFound
from .memguard import MemoryGuard
from ..render.overlay import EncoderOptions, OverlayStats, Tee, render_overlay
from ..pipeline import make_header, video_spec
from ..results.writers import RENDERED_FORMATS, ResultFiles
from .cache import LruCache
from .store import JobRecord, JobStore, open_store
from ..video import ChunkDecoder, VideoProbe, probe
from ..viewer.data import TimelineTally, write_viewer_files

#: Decoded frames the overlay render holds at once (at most the job's own chunk): it draws and
#: encodes one frame at a time, so a larger chunk would only cost the aggregation replica memory.
OVERLAY_CHUNK_BYTES = 32 * 2**20


class _Closable(Protocol):
    def close(self) -> None: ...


T = TypeVar("T", bound=_Closable)


class _Positioned(Generic[T]):
    """Open decoders or sessions by job id, each valid at one chunk position; closes what it
    evicts and what is asked for at another position."""

    def __init__(self, size: int) -> None:
        self._cache: LruCache[Hashable, tuple[int, T]] = LruCache(size, on_evict=lambda entry: entry[1].close())

    def take(self, key: Hashable, position: int) -> T | None:
        """The item for ``key`` if it is at ``position``; a mismatched one is closed."""
        entry = self._cache.pop(key)
        if entry is None:
            return None
        if entry[0] == position:
            return entry[1]
        entry[1].close()
        return None

    def put(self, key: Hashable, position: int, item: T) -> None:
        self._cache.put(key, (position, item))

    def clear(self) -> None:
        self._cache.clear()


class DecodeStage:
    """``reuse_buffer``: decode every chunk of a job into the same array. Only for a caller
    that copies each chunk away (the Decode replica, into Ray's object store) before it asks
    for the next: the job runner decodes a chunk ahead while the previous one is tracked.

    ``threads``: FFmpeg threads for jobs whose options leave the number to FFmpeg (0)."""

    def __init__(self, store: JobStore, cache_size: int = 8, reuse_buffer: bool = False,
                 threads: int = 0) -> None:
        self.store = store
        self.reuse_buffer = reuse_buffer
        self.threads = threads
        self._decoders: _Positioned[ChunkDecoder] = _Positioned(cache_size)

    def decode(self, task: ChunkTask) -> DecodedChunk:
        started = time.perf_counter()
        decoder = self._decoders.take(task.job_id, task.chunk_index)
        if decoder is None:
            decoding = task.decoding
            if not decoding.threads and self.threads:
                decoding = replace(decoding, threads=self.threads)
            decoder = ChunkDecoder(self.store.upload_path(task.job_id), task.video, decoding, task.cursor,
                                   reuse_buffer=self.reuse_buffer)
        try:
            chunk = decoder.next_chunk()
        except BaseException:
            decoder.close()
            raise
        if chunk.index != task.chunk_index:
            raise InternalError(f"decoded chunk {chunk.index} for task chunk {task.chunk_index}")
        if not decoder.finished:
            self._decoders.put(task.job_id, task.chunk_index + 1, decoder)
        return DecodedChunk(task, chunk, time.perf_counter() - started)

    def close(self) -> None:
        self._decoders.clear()


class TrackingStage:
    """Runs the engine on a chunk under the replica's memory guard."""

    def __init__(self, engine: Engine, store: JobStore, guard: MemoryGuard | None = None,
                 cache_size: int = 4) -> None:
        self.engine = engine
        self.store = store
        self.guard = guard or MemoryGuard(None)
        self._sessions: _Positioned[Session] = _Positioned(cache_size)

    def track(self, decoded: DecodedChunk) -> TrackedChunk:
        task, chunk = decoded.task, decoded.chunk
        started = time.perf_counter()
        session = self._sessions.take(task.job_id, task.chunk_index) or self._open(task)
        try:
            with self.guard.watch():
                output = session.process(chunk)
            state = session.export_state()
        except BaseException:
            session.close()
            raise
        if chunk.is_last:
            session.close()
        else:
            self._sessions.put(task.job_id, task.chunk_index + 1, session)
        spec = video_spec(task.video, task.decoding, task.filename, task.vertices)
        return TrackedChunk(task, output, state, len(chunk), chunk.is_last, chunk.cursor, self.engine.info,
                            self.engine.camera(spec), self.engine.holdback_frames,
                            {"decode": decoded.seconds, "tracking": time.perf_counter() - started},
                            self.engine.body_model() if task.chunk_index == 0 else None)

    def _open(self, task: ChunkTask) -> Session:
        state = self.store.load_state(task.job_id, task.chunk_index)
        if state is None:
            return self.engine.open(video_spec(task.video, task.decoding, task.filename, task.vertices))
        return self.engine.restore(state)

    def close(self) -> None:
        self._sessions.clear()


class AggregationStage:
    def __init__(self, store: JobStore) -> None:
        self.store = store

    def commit(self, tracked: TrackedChunk) -> ChunkReceipt:
        started = time.perf_counter()
        task = tracked.task
        stored = StoredChunk(tracked.output, tracked.engine, tracked.camera, tracked.holdback_frames,
                             tracked.body_model)
        self.store.commit_chunk(task.job_id, task.chunk_index, pickle.dumps(stored, protocol=5), tracked.state,
                                tracked.cursor, tracked.frames, tracked.is_last)
        timings = {**tracked.timings, "aggregation": time.perf_counter() - started}
        return ChunkReceipt(task.chunk_index, tracked.frames, tracked.is_last, tracked.cursor, timings)

    def finalize(self, job_id: str) -> dict[str, int]:
        """Assemble the committed chunks into the result files, then render what is made from
        them (the overlay MP4); return the sizes of the requested formats.

        The JSON result is written whatever ``formats`` says (only the requested formats can be
        downloaded): the viewer reads its frames by range, and the MP4 is drawn from it."""
        record = self.store.get(job_id)
        video, decoding, formats = record.video, record.decoding, record.options.formats
        # Spill beside the result: on the store's volume, not in a temporary folder in memory.
        directory = self.store.result_dir(job_id)
        written = ["json", *(f for f in formats if f != "json" and f not in RENDERED_FORMATS)]
        files = ResultFiles(directory, written, spill_dir=directory)
        timeline = TimelineTally()
        try:
            chunks = (pickle.loads(blob) for blob in self.store.chunk_outputs(job_id))
            first = next(chunks)
            header = make_header(video, decoding, first.engine, first.camera, first.body_model, record.options)
            assembler = ResultAssembler(header, Tee(files, timeline), first.holdback_frames)
            assembler.add(first.output)
            for stored in chunks:
                assembler.add(stored.output)
            assembler.finish()
        except BaseException:
            files.abort()
            raise
        write_viewer_files(directory, files.paths["json"], timeline)
        sizes: dict[str, int] = {fmt: path.stat().st_size for fmt, path in files.paths.items() if fmt in formats}
        if "mp4" in formats:
            sizes["mp4"] = self.render_overlay(record).bytes
        return sizes

    def render_overlay(self, record: JobRecord) -> OverlayStats:
        """The overlay MP4 of a job whose result JSON is written: the upload decoded again with
        the job's own decode options, chunk by chunk, drawn and encoded frame by frame
        (``overlay.render_overlay``). It needs no state from the chunks, so a finalize run again
        (another replica, after a crash) renders it again from the start. One FFmpeg thread and
        one x264 thread: the stage shares its CPUs. Stops (``JobCancelled``) between chunks
        once the job is cancelled or deleted."""
        def still_wanted(frames_written: int) -> None:
            try:
                cancelled = self.store.get(record.id).cancel_requested
            except JobNotFound:
                cancelled = True
            if cancelled:
                raise JobCancelled(f"the job was cancelled while its overlay was rendered ({frames_written} frames)")

        return render_overlay(self.store.upload_path(record.id), self.store.result_path(record.id, "json"),
                              self.store.result_path(record.id, "mp4"), decoding=record.decoding,
                              chunk_bytes=min(record.decoding.chunk_bytes, OVERLAY_CHUNK_BYTES),
                              encoder=EncoderOptions(threads=1), decode_threads=1, on_chunk=still_wanted)


class LocalStages:
    """The three stages chained in this process (implements ``service.ServiceStages``): the
    in-process service of the tests and the reference the Ray service is compared with.
    Stage work runs in worker threads, as it runs in other processes in the service, so that
    the event loop (runner, HTTP requests) is never blocked by a chunk."""

    def __init__(self, decoding: DecodeStage, tracking: TrackingStage, aggregation: AggregationStage,
                 limits: Limits | None = None) -> None:
        self.decoding, self.tracking, self.aggregation = decoding, tracking, aggregation
        self.limits = limits or Limits()

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine | None = None) -> LocalStages:
        """The stages the settings describe, on their store, with ``engine`` or the
        configured one."""
        from ..engines.registry import EngineRegistry

        store = open_store(settings.store)
        engine = engine or EngineRegistry().create(settings.engine.name, settings.engine.options)
        tracking = TrackingStage(engine, store, MemoryGuard(settings.tracking.memory_limit_bytes))
        return cls(DecodeStage(store), tracking, AggregationStage(store), settings.limits)

    async def probe(self, path: Path) -> VideoProbe:
        return await asyncio.to_thread(probe, path, self.limits)

    async def decode(self, task: ChunkTask) -> DecodedChunk:
        return await asyncio.to_thread(self.decoding.decode, task)

    async def track(self, decoded: Decoded) -> ChunkReceipt:
        assert isinstance(decoded, DecodedChunk)  # what this class's decode gave
        tracked = await asyncio.to_thread(self.tracking.track, decoded)
        # The commit (a few file writes) runs here, not in a thread: a job cancelled while its
        # chunk was tracked is cancelled at the await above and commits nothing more.
        return self.aggregation.commit(tracked)

    async def finalize(self, job_id: str) -> dict[str, int]:
        return await asyncio.to_thread(self.aggregation.finalize, job_id)

    def readiness_checks(self) -> dict[str, Awaitable[Any]]:
        return {"Decode": _ready(True), "Tracking": _ready(self.tracking.engine.info.to_dict()),
                "Aggregation": _ready(True)}


async def _ready(answer: Any) -> Any:
    return answer
