"""The overlay video: a real clip, the real default engine (blazepose), real PyAV encoding.

The job (tests/real_jobs.py) is seconds 1.0-3.6 of bikes.mp4 at max_side=320: the engine saw
320x136 frames, the result is in 640x272 source pixels, frame 0 is source frame 25. Two
people: the man walking past (track 1, detected at frames 5-18, predicted at 19-21) and the
cyclist (track 2, detected at 51-57, predicted at 58-60). The MP4 is compared with the plain
frames the engine saw (``ChunkDecoder`` at the result's options): overlay pixels on the boxes
and bones, in the track's colour; nothing changed far from every box.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path

import av
import numpy as np
import pytest
from real_jobs import bikes_window

from pose_pipeline.render import raster
from pose_pipeline.results.assembly import ResultAssembler
from pose_pipeline.assets.clips import CARPHONE, clip
from pose_pipeline.config import Settings
from pose_pipeline.engines.blazepose import BlazePoseEngine
from pose_pipeline.engines.blazepose.models import default_models_dir
from pose_pipeline.errors import InternalError
from pose_pipeline.render.overlay import EncoderOptions, OverlayFeed, OverlayWriter, Tee, render_overlay
from pose_pipeline.render.painter import FramePainter, OverlayStyle
from pose_pipeline.render.palette import bones_for, text_color, track_color
from pose_pipeline.pipeline import decode_options, make_header, track_file, video_spec
from pose_pipeline.results.schema import Frame, Person, Processing, ResultHeader, VideoInfo
from pose_pipeline.results.writers import MemoryWriter
from pose_pipeline.video import ChunkDecoder, DecodeOptions, probe

# crf 18: compression noise small enough to call a pixel "unchanged" within a few levels; one
# x264 thread, as the aggregation stage would run it.
FINE = EncoderOptions(crf=18, threads=1)
DETECTED_FRAMES, PREDICTED_FRAMES = (10, 15, 55), (20, 59)
FAR_PX = 8  # "far from any box": this many pixels outside every box (and its label)


@pytest.fixture(scope="module")
def job():
    return bikes_window()


@pytest.fixture(scope="module")
def plain(job) -> np.ndarray:
    """The frames the engine saw: (65, 136, 320, 3)."""
    p = job.result.header.processing
    options = DecodeOptions(max_side=p.max_side, fps=p.fps, start_s=p.start_s, end_s=p.end_s)
    with ChunkDecoder(job.video, probe(job.video), options) as decoder:
        return np.concatenate([chunk.frames for chunk in decoder])


@pytest.fixture(scope="module")
def rendered(job, tmp_path_factory) -> tuple[Path, list[np.ndarray], list[float]]:
    path = tmp_path_factory.mktemp("overlay") / "overlay.mp4"
    render_overlay(job.video, job.result_path, path, encoder=FINE)
    return (path, *decode(path))


def decode(path: Path) -> tuple[list[np.ndarray], list[float]]:
    with av.open(str(path)) as container:
        decoded = [(f.to_ndarray(format="rgb24"), float(f.time)) for f in container.decode(video=0)]
    return [image for image, _ in decoded], [t for _, t in decoded]


def processed_box(job, person: Person) -> np.ndarray:
    """The person's box in processed pixels (x1, y1, x2, y2)."""
    return person.bbox * 0.5  # 640x272 -> 320x136


def outline_mask(box: np.ndarray, shape: tuple[int, int], width: int) -> np.ndarray:
    """Pixels of the outline as ``raster.draw_box`` draws it (inwards from the edges)."""
    mask = np.zeros(shape, dtype=bool)
    left, top = int(round(box[0])), int(round(box[1]))
    right, bottom = int(round(box[2])) - 1, int(round(box[3])) - 1
    mask[max(top, 0):bottom + 1, max(left, 0):right + 1] = True
    mask[max(top + width, 0):bottom + 1 - width, max(left + width, 0):right + 1 - width] = False
    return mask


def far_mask(frame: Frame, shape: tuple[int, int]) -> np.ndarray:
    """Pixels at least FAR_PX outside every box, and outside the labels above them."""
    mask = np.ones(shape, dtype=bool)
    for person in frame.people:
        x1, y1, x2, y2 = (person.bbox * 0.5).tolist()
        mask[max(int(y1) - FAR_PX - 12, 0):int(y2) + FAR_PX, max(int(x1) - FAR_PX, 0):int(x2) + FAR_PX] = False
    return mask


def distance(pixels: np.ndarray, color) -> np.ndarray:
    return np.abs(pixels.astype(np.int16) - np.array(color, np.int16)).max(axis=-1)


# --- the MP4 ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_mp4_decodes_with_the_results_frames_size_and_times(job, rendered):
    path, images, times = rendered
    frames = job.result.frames
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert container.format.name.split(",")[0] == "mov"  # FFmpeg's family name for MP4
    assert len(images) == len(frames) == 65
    assert {image.shape for image in images} == {(136, 320, 3)}
    # the frames keep the result's timing, from the window's first frame (1.0 s) on
    assert np.allclose(times, [f.time_s - frames[0].time_s for f in frames], atol=1e-4)


def test_box_outlines_are_in_the_tracks_colour_and_far_pixels_unchanged(job, plain, rendered):
    _, images, _ = rendered
    for index in DETECTED_FRAMES + PREDICTED_FRAMES:
        frame = job.result.frames[index]
        (person,) = frame.people
        color = track_color(person.track_id)
        outline = outline_mask(processed_box(job, person), plain.shape[1:3], 2 if person.detected else 1)
        drawn, before = images[index][outline], plain[index][outline]
        changed = np.abs(drawn.astype(int) - before).max(axis=1) > 40
        near_colour = distance(drawn, color) < distance(before, color)
        if person.detected:  # solid: every outline pixel, most of them much nearer the colour than before
            assert changed.mean() > 0.9 and near_colour.mean() > 0.95, index
            # (4:2:0 halves the chroma resolution: a 2 px line on odd columns blends with its
            # neighbours, more or less visibly as the picture around it is darker or lighter)
            assert np.median(distance(drawn, color)) < 0.5 * np.median(distance(before, color)), index
        else:  # dashed: about half of them changed, all of them pulled towards the colour (chroma)
            assert 0.3 < changed.mean() < 0.7 and near_colour.mean() > 0.6, index
        far = far_mask(frame, plain.shape[1:3])
        assert far.mean() > 0.4
        # compression noise only (about 2.3 levels at crf 18); a drawn pixel differs by 50+
        assert np.abs(images[index][far].astype(int) - plain[index][far]).mean() < 4.0, index
    # a frame with nobody: the picture as it was, up to compression
    assert not job.result.frames[40].people
    assert np.abs(images[40].astype(int) - plain[40]).mean() < 4.0


def test_the_skeleton_is_drawn_where_the_confident_joints_are(job, plain, rendered):
    """At each confident bone's midpoint: the track's exact colour when drawn, and in the MP4
    a pixel nearby much nearer that colour than the picture was."""
    _, images, _ = rendered
    painter = FramePainter(job.result.header)
    unlabelled = FramePainter(job.result.header, OverlayStyle(labels=False))
    checked = 0
    for index in DETECTED_FRAMES:
        frame = job.result.frames[index]
        (person,) = frame.people
        drawn, bare = plain[index].copy(), plain[index].copy()
        painter.paint(drawn, frame)
        unlabelled.paint(bare, frame)
        joints = person.joints_2d * 0.5
        sure = person.joints_confidence >= 0.5
        color = track_color(person.track_id)
        for a, b in bones_for("blazepose33"):
            if not (sure[a] and sure[b]) or np.linalg.norm(joints[a] - joints[b]) < 6:
                continue
            x, y = np.floor((joints[a] + joints[b]) / 2).astype(int)
            near = (slice(max(y - 1, 0), y + 2), slice(max(x - 1, 0), x + 2))
            if not np.array_equal(drawn[near], bare[near]):
                continue  # under the id's label, which is drawn last so that no bone hides it
            # within a pixel of the midpoint: lines are sampled once per row or column
            assert (drawn[near] == color).all(axis=-1).any(), (index, a, b)
            encoded, before = distance(images[index][near], color).min(), distance(plain[index][near], color).min()
            assert encoded < before - 30, (index, a, b, encoded, before)
            checked += 1
    assert checked >= 15  # shoulders, arms, torso and face at least


# --- drawing (exact, before encoding) -----------------------------------------------------------


def test_drawing_exact_colours_dashes_labels_and_nothing_else(job, plain):
    painter = FramePainter(job.result.header)
    for index in (10, 20):
        frame = job.result.frames[index]
        (person,) = frame.people
        image = plain[index].copy()
        painter.paint(image, frame)
        color = track_color(person.track_id)
        changed = (image != plain[index]).any(axis=-1)
        x1, y1, x2, y2 = processed_box(job, person)
        left, right = int(round(x1)), int(round(x2)) - 1
        scale = OverlayStyle().widths(image.shape[1], image.shape[0])[1]
        assert scale == 2  # at this small size: 10 pixels tall digits
        label_h = (raster.GLYPH_HEIGHT + 2) * scale
        rows = np.arange(int(round(y1)) + label_h + 2, int(round(y2)) - 2)  # below the label
        column = (image[rows, left] == color).all(axis=-1)
        inner = (image[rows, left + 1] == color).all(axis=-1)
        if person.detected:  # solid, 2 px
            assert column.all() and inner.all()
        else:  # dashed in 6 px steps, 1 px
            assert 0.4 < column.mean() < 0.6 and not inner.any()
            assert np.array_equal(column, ((rows - int(round(y1))) // 6) % 2 == 0)
        # nothing drawn outside the box (the label is inside when the box touches the top)
        inside = np.zeros_like(changed)
        inside[max(int(round(y1)), 0):int(round(y2)), left:right + 1] = True
        assert changed.any() and not (changed & ~inside).any()
        # the label: the track id in the glyph font, in the text colour, on a patch of the track colour
        glyph = raster._glyph(str(person.track_id), scale)
        top, start = int(round(y1)) + scale, left + scale  # inside the patch's padding
        patch = image[top:top + glyph.shape[0], start:start + glyph.shape[1]]
        assert np.array_equal((patch == text_color(color)).all(axis=-1), glyph)


def test_joints_under_the_confidence_threshold_are_not_drawn(job, plain):
    frame = job.result.frames[10]
    (person,) = frame.people
    unsure = dataclasses.replace(person, joints_confidence=np.full(33, 0.49, np.float32))
    painter = FramePainter(job.result.header)
    no_skeleton = FramePainter(job.result.header, OverlayStyle(skeleton=False))
    with_unsure, without = plain[10].copy(), plain[10].copy()
    painter.paint(with_unsure, Frame(frame.index, frame.source_index, frame.time_s, (unsure,)))
    no_skeleton.paint(without, frame)
    assert np.array_equal(with_unsure, without)
    drawn = plain[10].copy()
    painter.paint(drawn, frame)
    assert (drawn != without).any(axis=-1).sum() > 100  # with his confidences: the skeleton


def test_drawing_a_busy_720p_frame_takes_milliseconds(job):
    """20 people on 1280x720, each the real man of frame 10 (box, 33 joints) twice his size at
    a random place: about 9 ms on the 2-core machine (bench/overlay_speed.py: 0.3-0.5 ms per
    person). The bound is 5x that, for a loaded machine: it catches a Python loop per pixel
    or per sample point, which takes seconds."""
    (man,) = job.result.frames[10].people
    rng = np.random.default_rng(0)
    header = ResultHeader(
        engine=job.result.header.engine,
        video=VideoInfo(1280, 720, 30.0, 1.0, 30, 0, "h264", "mp4"),
        processing=Processing(None, None, 1280, 720))
    people = []
    for track_id in range(1, 21):
        shift = rng.uniform([-200, -50], [700, 150]).astype(np.float32)
        people.append(dataclasses.replace(
            man, track_id=track_id, bbox=(man.bbox.reshape(2, 2) * 2 + shift).ravel(),
            joints_2d=man.joints_2d * 2 + shift, detected=track_id % 4 != 0))
    frame = Frame(0, 0, 0.0, tuple(people))
    painter = FramePainter(header)
    image = np.zeros((720, 1280, 3), np.uint8)
    painter.paint(image, frame)  # warm-up (glyph cache)
    assert (image != 0).any(axis=-1).mean() > 0.05
    started = time.perf_counter()
    for _ in range(20):
        painter.paint(image, frame)
    assert (time.perf_counter() - started) / 20 < 0.05


# --- the aggregation stage's way: chunk by chunk through the assembler --------------------------


class RecordingWriter(OverlayWriter):
    """Keeps a digest of every image it hands to the encoder: what was drawn, exactly (x264's
    output is not repeatable bit for bit here, even with one thread: the first video a process
    encodes can differ from the next ones)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.drawn: list[bytes] = []

    def _encode(self, image: np.ndarray, time_s: float) -> None:
        self.drawn.append(hashlib.sha256(image.tobytes()).digest())
        super()._encode(image, time_s)


@pytest.mark.slow  # runs the engine again, in chunks
def test_fed_chunk_by_chunk_through_the_assembler_it_is_the_offline_video(job, tmp_path):
    """The engine run again in chunks of 7 frames, a decoder that reuses its buffer (each chunk
    overwrites the last), the feed beside a result writer: the same pictures as the offline
    render of the final result, copying at most two hold-back windows of frames."""
    settings = Settings.from_dict({"decode": {"chunk_bytes": 7 * 320 * 136 * 3}})
    engine = BlazePoseEngine(models_dir=str(default_models_dir()))
    info = probe(job.video)
    decoding = decode_options(settings, job.options)
    spec = video_spec(info, decoding)
    header = make_header(info, decoding, engine.info, engine.camera(spec))
    fed = RecordingWriter(tmp_path / "fed.mp4", header)
    feed = OverlayFeed(fed, engine.holdback_frames)
    memory = MemoryWriter()
    assembler = ResultAssembler(header, Tee(memory, feed), engine.holdback_frames)
    session = engine.open(spec)
    chunks = 0
    with ChunkDecoder(job.video, info, decoding, reuse_buffer=True) as decoder:
        for chunk in decoder:
            feed.video(chunk.first_frame, chunk.frames)
            assembler.add(session.process(chunk))
            chunks += 1
    session.close()
    assembler.finish()
    assert chunks == 10 and engine.holdback_frames == 2
    assert [f.to_dict() for f in memory.result.frames] == [f.to_dict() for f in job.result.frames]
    # copies: the previous chunk's unpublished tail and this chunk's, at most
    assert feed.stats.frames == 65 and feed.max_copied == 2 * engine.holdback_frames
    # offline from the same frames in memory (the JSON file's are rounded to 0.01 px, which may
    # move an edge by a pixel)
    offline = RecordingWriter(tmp_path / "offline.mp4", header)
    with ChunkDecoder(job.video, info, decoding) as decoder:
        for chunk in decoder:
            offline.write(chunk.frames, memory.result.frames[chunk.first_frame:chunk.first_frame + len(chunk)])
    offline.close()
    assert len(fed.drawn) == 65 and fed.drawn == offline.drawn
    assert len(set(fed.drawn)) == 65  # every frame its own picture: none paired twice
    assert len(decode(tmp_path / "fed.mp4")[0]) == 65


def test_the_feed_refuses_chunks_out_of_order(job, plain, tmp_path):
    feed = OverlayFeed(OverlayWriter(tmp_path / "x.mp4", job.result.header), holdback_frames=2)
    feed.video(0, plain[:7])
    with pytest.raises(InternalError, match="were not published"):
        feed.video(7, plain[7:14])  # the assembler never got chunk 0's output
    feed.abort()
    assert not list(tmp_path.iterdir())  # no partial file left


# --- sizes and mismatches -----------------------------------------------------------------------


def test_an_odd_frame_size_is_padded_to_even(job, plain, tmp_path):
    header = job.result.header
    odd = dataclasses.replace(header, processing=dataclasses.replace(header.processing, frame_width=319,
                                                                      frame_height=135))
    with OverlayWriter(tmp_path / "odd.mp4", odd) as writer:
        writer.write(plain[5:15, :135, :319], job.result.frames[5:15])
    images, _ = decode(tmp_path / "odd.mp4")
    assert len(images) == 10 and images[0].shape == (136, 320, 3)


@pytest.mark.slow  # runs the engine again, at 10 fps
def test_a_result_sampled_at_10_fps_renders_its_own_frames_at_their_times(job, tmp_path):
    """fps=10 on the 25 fps clip: the engine saw every 2nd or 3rd source frame; the MP4 has
    exactly those (decoded again at the result's options), each at its own time: 0.12 and
    0.08 s apart in turn, 10 per second."""
    memory = MemoryWriter()
    track_file(job.video, BlazePoseEngine(models_dir=str(default_models_dir())), Settings.from_dict({}),
               job.options.model_copy(update={"fps": 10.0}), memory)
    sampled = memory.result
    assert sampled.header.processing.fps == 10.0 and len(sampled.frames) == 26
    stats = render_overlay(job.video, sampled, tmp_path / "sampled.mp4", encoder=FINE)
    images, times = decode(tmp_path / "sampled.mp4")
    assert stats.frames == len(images) == 26
    assert np.allclose(times, [f.time_s - 1.0 for f in sampled.frames], atol=1e-4)
    assert set(np.diff([f.source_index for f in sampled.frames]).tolist()) == {2, 3}
    assert np.isclose(np.mean(np.diff(times)), 0.1, atol=1e-3)


def test_rendering_against_another_video_is_refused(job, tmp_path):
    with pytest.raises(ValueError, match="not the video of this result"):
        render_overlay(clip(CARPHONE), job.result, tmp_path / "wrong.mp4")
    assert not list(tmp_path.iterdir())
