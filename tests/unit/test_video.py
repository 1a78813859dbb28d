"""pose_pipeline.video on real files written by PyAV (tests/support/media.py); nothing is mocked.

Every test video shows its own frame index (``media.read_index``), so the tests check that
the decoder returned exactly the right source frames, not just the right number of them.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import pytest

from pose_pipeline.config import Limits
from pose_pipeline.errors import (CorruptVideo, DurationTooLong, EmptyUpload, FileTooLarge, InvalidOption,
                                  NotAMediaFile, NoVideoStream, ResolutionTooLarge, UnsupportedCodec)
from pose_pipeline.video import ChunkDecoder, DecodeCursor, DecodeOptions, decode_chunks, probe

FPS, FRAMES, SIZE = 30, 30, (64, 48)
FRAME_BYTES = SIZE[0] * SIZE[1] * 3


class Format(NamedTuple):
    write: dict  # media.write_video arguments
    codec: str
    container: str
    has_audio: bool = False


# gop=8: a keyframe every 8 frames, so that resuming really seeks into the middle of the file.
FORMATS = {
    "h264.mp4": Format(dict(codec="libx264", gop=8), "h264", "mp4"),
    # B-frames: decode order differs from presentation order.
    "h264-bframes.mp4": Format(dict(codec="libx264", gop=8, options={"preset": "medium"}), "h264", "mp4"),
    "h264.mov": Format(dict(codec="libx264", audio=True), "h264", "mov", has_audio=True),
    "h264.mkv": Format(dict(codec="libx264", gop=8), "h264", "mkv"),
    "h265.mkv": Format(dict(codec="libx265", gop=8), "hevc", "mkv"),
    "h265.mp4": Format(dict(codec="libx265"), "hevc", "mp4"),
    "vp9.webm": Format(dict(codec="libvpx-vp9", gop=8, audio=True), "vp9", "webm", has_audio=True),
    # Odd sizes need a format without chroma subsampling, or a codec that pads (mpeg4).
    "mpeg4-161x121.mp4": Format(dict(codec="mpeg4", size=(161, 121)), "mpeg4", "mp4"),
    "h264-444-161x121.mp4": Format(dict(codec="libx264", size=(161, 121), pix_fmt="yuv444p"), "h264", "mp4"),
}
RESUMABLE = ["h264.mp4", "h264-bframes.mp4", "h265.mkv", "vp9.webm"]


@pytest.fixture(scope="module")
def videos(media, tmp_path_factory):
    """``videos(name)``: the path of a video from FORMATS, written once per module."""
    folder = tmp_path_factory.mktemp("videos")
    written = {}

    def get(name: str):
        if name not in written:
            written[name] = media.write_video(folder / name, fps=FPS, frames=FRAMES,
                                        **{"size": SIZE, **FORMATS[name].write})
        return written[name]

    return get


def decode(path, options: DecodeOptions | None = None) -> list:
    """All chunks of the video, from the start."""
    return list(decode_chunks(path, probe(path), options or DecodeOptions()))


def joined(chunks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames, source indices, times) of all chunks together."""
    return (np.concatenate([c.frames for c in chunks]), np.concatenate([c.source_indices for c in chunks]),
            np.concatenate([c.times for c in chunks]))


def shown(media, frames) -> list[int]:
    """The source frame index drawn into each decoded frame."""
    return [media.read_index(frame) for frame in frames]


# --- probe ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FORMATS)
def test_probe_describes_each_format(videos, name):
    fmt, path = FORMATS[name], videos(name)
    video = probe(path, Limits())
    assert (video.codec, video.container, video.has_audio) == (fmt.codec, fmt.container, fmt.has_audio)
    assert (video.width, video.height, video.rotation) == (*fmt.write.get("size", SIZE), 0)
    assert video.fps == pytest.approx(FPS) and not video.variable_fps
    assert (video.frame_count, video.frame_count_exact) == (FRAMES, True)
    assert video.duration_s == pytest.approx(FRAMES / FPS, abs=0.002)
    assert video.file_size == path.stat().st_size


def test_probe_estimates_the_frame_count_of_a_long_matroska_file(media, tmp_path):
    # MP4/MOV index every frame; Matroska states only a duration, and probe reads the
    # first 300 packets at most.
    video = probe(media.write_video(tmp_path / "long.mkv", size=(32, 32), frames=400))
    assert (video.frame_count, video.frame_count_exact) == (400, False)
    assert video.fps == pytest.approx(FPS) and not video.variable_fps


def test_probe_reports_variable_frame_rate(media, tmp_path):
    times = [0.0, 0.01, 0.05, 0.2, 0.21, 0.4, 0.7, 0.71, 0.72, 1.0]
    video = probe(media.write_video(tmp_path / "vfr.mp4", times=times))
    assert video.variable_fps
    assert video.frame_count == len(times) and video.frame_count_exact
    assert video.fps == pytest.approx(len(times) / video.duration_s)


# --- decoding -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FORMATS)
def test_decodes_every_frame_in_order(media, videos, name):
    width, height = FORMATS[name].write.get("size", SIZE)
    frames, sources, times = joined(decode(videos(name), DecodeOptions(chunk_bytes=7 * width * height * 3)))
    assert frames.shape == (FRAMES, height, width, 3) and frames.dtype == np.uint8
    assert list(sources) == list(range(FRAMES)) == shown(media, frames)
    np.testing.assert_allclose(times, sources / FPS, atol=0.001)  # Matroska rounds to milliseconds


@pytest.mark.parametrize("name", FORMATS)
def test_pixels_equal_pyav_conversion(videos, name):
    """The decoder converts through a filter graph (pooled buffers); the pixels are the
    ones PyAV's own per-frame conversion gives, but for rounding at odd sizes with
    subsampled chroma (swscale takes another code path there)."""
    import av

    with av.open(str(videos(name))) as container:
        expected = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    got = joined(decode(videos(name), DecodeOptions(chunk_bytes=1)))[0]
    if name == "mpeg4-161x121.mp4":
        assert np.abs(got.astype(int) - expected).max() <= 1
    else:
        np.testing.assert_array_equal(got, expected)


def test_reused_buffer_holds_the_latest_chunk(videos):
    path = videos("h264.mp4")
    options = DecodeOptions(chunk_bytes=7 * FRAME_BYTES)
    fresh = decode(path, options)
    with ChunkDecoder(path, probe(path), options, reuse_buffer=True) as decoder:
        for want in fresh:
            got = decoder.next_chunk()
            np.testing.assert_array_equal(got.frames, want.frames)
    assert len({id(c.frames.base) for c in fresh}) == len(fresh)  # without reuse: one buffer each
    assert got.frames.base is not want.frames.base


@pytest.mark.parametrize("budget", [1, 5 * FRAME_BYTES, 6 * FRAME_BYTES - 1, 100 * FRAME_BYTES])
def test_chunks_follow_the_byte_budget(videos, budget):
    chunks = decode(videos("h264.mp4"), DecodeOptions(chunk_bytes=budget))
    per_chunk = max(1, budget // FRAME_BYTES)  # at least one frame, however small the budget
    assert [len(c) for c in chunks[:-1]] == [per_chunk] * (len(chunks) - 1)
    assert 0 < len(chunks[-1]) <= per_chunk and sum(len(c) for c in chunks) == FRAMES
    for i, chunk in enumerate(chunks):
        assert chunk.frames.nbytes <= max(budget, FRAME_BYTES)
        assert chunk.frames.flags.c_contiguous and chunk.frames.dtype == np.uint8
        assert (chunk.index, chunk.is_last) == (i, i == len(chunks) - 1)
        assert chunk.first_frame == sum(len(c) for c in chunks[:i]) == chunk.cursor.next_frame - len(chunk)


@pytest.mark.parametrize("options", [
    DecodeOptions(chunk_bytes=7 * FRAME_BYTES),
    DecodeOptions(chunk_bytes=3 * 32 * 24 * 3, fps=10, max_side=32),
    DecodeOptions(chunk_bytes=2 * FRAME_BYTES, fps=12, start_s=0.2, end_s=0.9),
], ids=["all-frames", "fps-max_side", "window-fps"])
@pytest.mark.parametrize("name", RESUMABLE)
def test_resuming_at_any_chunk_gives_the_same_frames(videos, name, options):
    path = videos(name)
    video = probe(path)
    chunks = list(decode_chunks(path, video, options))
    assert len(chunks) >= 3
    for i, chunk in enumerate(chunks[:-1]):
        # The cursor travels as JSON between processes.
        cursor = DecodeCursor.from_dict(json.loads(json.dumps(chunk.cursor.to_dict())))
        rest, expected = list(decode_chunks(path, video, options, cursor)), chunks[i + 1:]
        assert [(c.index, c.first_frame, c.is_last) for c in rest] == \
            [(c.index, c.first_frame, c.is_last) for c in expected]
        for got, want in zip(joined(rest), joined(expected)):
            np.testing.assert_array_equal(got, want)


def test_fps_sampling_on_a_constant_rate(media, videos):
    frames, sources, _ = joined(decode(videos("h264.mp4"), DecodeOptions(fps=10)))
    assert list(sources) == list(range(0, FRAMES, 3)) == shown(media, frames)
    _, sources, _ = joined(decode(videos("h264.mp4"), DecodeOptions(fps=60)))  # never more than the source
    assert list(sources) == list(range(FRAMES))


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_fps_sampling_goes_by_timestamp_on_variable_frame_rate(media, tmp_path, suffix):
    times = [0.0, 0.01, 0.05, 0.2, 0.21, 0.4, 0.7, 0.71, 0.72, 1.0]
    path = media.write_video(tmp_path / f"vfr{suffix}", times=times, gop=2)  # so that start_s seeks
    assert probe(path).variable_fps
    # 5 fps: the first frame of each 0.2 s slot. Dropping by index would keep 0, 2, 4, 6, 8.
    frames, sources, got = joined(decode(path, DecodeOptions(fps=5)))
    assert list(sources) == [0, 3, 5, 6, 9] == shown(media, frames)
    np.testing.assert_allclose(got, [times[i] for i in sources], atol=1e-3)
    # After a seek, source indices are still true indices, not time x average fps.
    frames, sources, _ = joined(decode(path, DecodeOptions(start_s=0.3)))
    assert list(sources) == [5, 6, 7, 8, 9] == shown(media, frames)


@pytest.mark.parametrize("name", RESUMABLE)
@pytest.mark.parametrize("start_s, end_s, first, stop", [(0.3, 0.6, 9, 18), (0.3, None, 9, FRAMES),
                                                       (None, 0.5, 0, 15), (0.51, 0.52, 16, 16)])
def test_start_and_end_select_a_window(media, videos, name, start_s, end_s, first, stop):
    chunks = decode(videos(name), DecodeOptions(start_s=start_s, end_s=end_s, chunk_bytes=4 * FRAME_BYTES))
    frames, sources, times = joined(chunks)
    assert list(sources) == list(range(first, stop)) == shown(media, frames)
    assert np.all(times >= (start_s or 0) - 1e-3) and (end_s is None or np.all(times < end_s))


def test_start_after_the_end_is_refused(videos):
    with pytest.raises(InvalidOption, match="start_s"):
        decode(videos("h264.mp4"), DecodeOptions(start_s=5.0))


@pytest.mark.parametrize("name, max_side, size", [
    ("h264.mp4", 32, (32, 24)),
    ("h264-444-161x121.mp4", 80, (80, 60)),
    ("mpeg4-161x121.mp4", 100, (100, 75)),
    ("h264.mp4", 100, SIZE),  # never enlarged
])
def test_max_side_shrinks_and_keeps_the_aspect_ratio(media, videos, name, max_side, size):
    frames, sources, _ = joined(decode(videos(name), DecodeOptions(max_side=max_side)))
    assert frames.shape == (FRAMES, size[1], size[0], 3)
    assert shown(media, frames) == list(sources)


def quadrants(frame: np.ndarray) -> np.ndarray:
    """Mean brightness of the (top-left, top-right, bottom-left, bottom-right) quarters."""
    height, width = frame.shape[0] // 2, frame.shape[1] // 2
    return np.array([frame[:height, :width].mean(), frame[:height, width:].mean(),
                     frame[height:, :width].mean(), frame[height:, width:].mean()])


@pytest.mark.parametrize("display_rotation", [-90, 90, 180])
def test_rotated_phone_video_decodes_upright(media, tmp_path, display_rotation):
    # The scene as a person sees it: portrait, a white block in the top-left corner only,
    # so every quarter turn and every mirror image puts it somewhere else.
    width, height = 48, 64
    upright = np.zeros((height, width, 3), np.uint8)
    upright[: height // 2, : width // 2] = 255
    # A phone stores the picture turned and asks players (display matrix, counter-clockwise
    # degrees) to turn it back clockwise by -display_rotation.
    clockwise = -display_rotation % 360
    stored = np.ascontiguousarray(np.rot90(upright, clockwise // 90))  # np.rot90: counter-clockwise
    path = media.write_video(tmp_path / "phone.mov", size=(stored.shape[1], stored.shape[0]), frames=3,
                       rotation=display_rotation, draw=lambda i: stored)
    video = probe(path)
    assert (video.rotation, video.display_size, video.video_info().width) == (clockwise, (width, height), width)
    for options, shape in [(DecodeOptions(), (height, width)), (DecodeOptions(max_side=32), (32, 24))]:
        for frame in joined(decode(path, options))[0]:
            assert frame.shape[:2] == shape
            top_left, *others = quadrants(frame)
            assert top_left > 200 and max(others) < 50


# --- bad input ------------------------------------------------------------------------------


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(EmptyUpload, match="empty") as caught:
        probe(tmp_path / "empty.mp4")
    assert caught.value.code == "empty_file"


def test_text_file_named_mp4(tmp_path):
    (tmp_path / "notes.mp4").write_text("these are my notes, not a video\n" * 20)
    with pytest.raises(NotAMediaFile, match="not a video") as caught:
        probe(tmp_path / "notes.mp4")
    assert caught.value.code == "not_a_media_file"


@pytest.mark.parametrize("name", ["song.m4a", "song.webm"])
def test_audio_only_file(media, tmp_path, name):
    with pytest.raises(NoVideoStream, match="no video stream.*only audio") as caught:
        probe(media.write_audio_only(tmp_path / name))
    assert caught.value.code == "no_video_stream"


def test_unsupported_codec(media, tmp_path):
    path = media.write_video(tmp_path / "lossless.mkv", codec="ffv1")
    assert probe(path).codec == "ffv1"  # readable; refused only by the configured limits
    with pytest.raises(UnsupportedCodec, match="'ffv1' is not supported") as caught:
        probe(path, Limits())
    assert (caught.value.code, caught.value.details["codec"]) == ("unsupported_codec", "ffv1")


@pytest.mark.parametrize("limits, error, message", [
    (Limits(max_width=160, max_height=160), ResolutionTooLarge, "161x121, over the limit of 160x160"),
    (Limits(max_duration_s=0.5), DurationTooLong, "lasts 1.0 s, over the limit"),
    (Limits(max_upload_bytes=100), FileTooLarge, "over the limit of 100"),
])
def test_limits(videos, limits, error, message):
    with pytest.raises(error, match=message) as caught:
        probe(videos("mpeg4-161x121.mp4"), limits)
    assert caught.value.code == error.code


def assert_corrupt(caught, first: int, last: int) -> None:
    """The error names a frame in [first, last] and its time."""
    frame, time_s = caught.value.details["frame"], caught.value.details["time_s"]
    assert caught.value.code == "corrupt_video"
    assert first <= frame <= last, frame
    assert time_s == pytest.approx(frame / FPS, abs=0.05)
    assert f"frame {frame}" in caught.value.message


def test_mp4_cut_before_its_index(media, tmp_path):
    path = media.truncate(media.write_video(tmp_path / "cut.mp4"), 0.5)  # the index (moov) comes last
    with pytest.raises(CorruptVideo, match="index .* missing.*cut off") as caught:
        probe(path)
    assert caught.value.details == {"frame": 0, "time_s": 0.0}


CUT_FORMATS = {"faststart.mp4": dict(container_options={"movflags": "faststart"}),  # index first
               "cut.mkv": {}, "cut.webm": dict(codec="libvpx-vp9")}


@pytest.mark.parametrize("name", CUT_FORMATS)
def test_file_cut_in_its_data_is_refused_by_probe(media, tmp_path, name):
    path = media.truncate(media.write_video(tmp_path / name, draw=lambda i: media.noisy_index_image(i, *SIZE),
                                            **CUT_FORMATS[name]), 0.5)
    with pytest.raises(CorruptVideo, match="cut off") as caught:
        probe(path)
    assert_corrupt(caught, 5, 25)


@pytest.mark.parametrize("name", CUT_FORMATS)
def test_file_cut_after_probing_fails_the_decode(media, tmp_path, name):
    # The decoder checks on its own: a file can change between probe and decode.
    path = media.write_video(tmp_path / name, draw=lambda i: media.noisy_index_image(i, *SIZE), **CUT_FORMATS[name])
    video = probe(path)
    media.truncate(path, 0.5)
    with pytest.raises(CorruptVideo) as caught:
        list(decode_chunks(path, video, DecodeOptions(chunk_bytes=5 * FRAME_BYTES)))
    assert_corrupt(caught, 5, 25)


# Random bytes inside a frame often decode to wrong pixels with no error at all (H.264 CABAC,
# HEVC and VP9 have no checksums), so each case overwrites 4 KiB: that breaks frame
# boundaries, which the decoder (H.264, MPEG-4) or the demuxer (Matroska, WebM: as missing
# frames) does notice.
DAMAGE_FORMATS = {
    "h264.mp4": dict(codec="libx264", options={"preset": "medium"}),
    "h264.mkv": dict(codec="libx264", options={"preset": "medium"}),
    "h264-cavlc.mov": dict(codec="libx264"),
    "mpeg4.mp4": dict(codec="mpeg4"),
    "vp9.webm": dict(codec="libvpx-vp9"),
}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", DAMAGE_FORMATS)
def test_corrupt_bytes_in_the_middle(media, tmp_path, name, seed):
    path = media.write_video(tmp_path / name, size=(128, 96), draw=lambda i: media.noisy_index_image(i, 128, 96),
                       **DAMAGE_FORMATS[name])
    media.corrupt_middle(path, length=4096, seed=seed)
    video = probe(path)  # the header is intact: the damage shows only when decoding
    with pytest.raises(CorruptVideo, match="damaged|cut off") as caught:
        list(decode_chunks(path, video, DecodeOptions()))
    assert_corrupt(caught, 1, FRAMES - 1)


def test_ffmpeg_does_not_write_to_stderr(media, tmp_path, capfd, videos):
    clean = videos("h265.mkv")
    damaged = media.corrupt_middle(media.write_video(tmp_path / "damaged.mp4", size=(128, 96),
                                         draw=lambda i: media.noisy_index_image(i, 128, 96)), length=4096)
    capfd.readouterr()
    decode(clean)
    with pytest.raises(CorruptVideo):
        decode(damaged)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("field, value", [("fps", 0), ("max_side", 8), ("start_s", -1.0), ("chunk_bytes", 0)])
def test_invalid_options(field, value):
    with pytest.raises(InvalidOption) as caught:
        DecodeOptions(**{field: value})
    assert caught.value.details["option"] == field


def test_end_before_start_is_refused():
    with pytest.raises(InvalidOption, match="end_s"):
        DecodeOptions(start_s=2.0, end_s=1.0)
