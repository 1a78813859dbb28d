"""What every engine must do with chunk outputs, checked while they are put together (the
``contract`` fixture)."""

from __future__ import annotations

from pose_pipeline.engines.base import ChunkOutput
from pose_pipeline.results.schema import Person


def collect(outputs: list[ChunkOutput], holdback_frames: int) -> list[dict[int, Person]]:
    """Per-frame people with the corrections applied, checking that each correction adds a
    person to a frame already returned and within the hold-back window."""
    frames: list[dict[int, Person]] = []
    for output in outputs:
        first = output.frames[0].index if output.frames else len(frames)
        for frame_index, person in output.corrections:
            assert first - holdback_frames <= frame_index < first, (frame_index, first)
            assert person.track_id not in frames[frame_index]
            frames[frame_index][person.track_id] = person
        for frame in output.frames:
            assert frame.index == len(frames)
            frames.append({p.track_id: p for p in frame.people})
    return frames
