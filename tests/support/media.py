"""Test videos written with PyAV, and ways to damage them.

Plain functions, reached through the ``media`` fixture. By default every frame shows its
own index as a 4x4 grid of black/white cells (``read_index`` reads it back), so a test can
tell exactly which source frame a decoder returned.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# Fast encoder settings: test videos are tiny and quality does not matter.
_FAST = {
    "libx264": {"preset": "ultrafast"},
    "libx265": {"preset": "ultrafast", "x265-params": "log-level=error"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"},
}
# Codecs that take only some pixel formats; everything else gets yuv420p.
_PIX_FMT = {"ffv1": "yuv444p", "prores": "yuv422p10le", "mjpeg": "yuvj420p"}
# Fine enough for irregular times in milliseconds and for 24/25/30/60 fps exactly, and
# under 2**16 as mpeg4 requires.
_TIME_BASE = Fraction(1, 30000)
_GRID = 4  # index_image draws a _GRID x _GRID grid of bits


def index_image(i: int, width: int, height: int) -> np.ndarray:
    """An RGB frame whose 4x4 cells are the bits of ``i`` (row-major, most significant first)."""
    bits = [(i >> (_GRID * _GRID - 1 - k)) & 1 for k in range(_GRID * _GRID)]
    cells = np.array(bits, dtype=np.uint8).reshape(_GRID, _GRID) * 255
    rows = np.arange(height) * _GRID // height
    cols = np.arange(width) * _GRID // width
    return np.repeat(cells[rows][:, cols][:, :, None], 3, axis=2)


def noisy_index_image(i: int, width: int, height: int) -> np.ndarray:
    """``index_image`` under per-frame noise: compresses like camera footage (large frames),
    so that damage to the file lands inside frame data; ``read_index`` still reads it."""
    noise = np.random.default_rng(i).integers(0, 64, (height, width, 1), dtype=np.uint8)
    return index_image(i, width, height) // 4 * 3 + noise


def read_index(image: np.ndarray) -> int:
    """The index ``index_image`` drew, read from the centre of each cell (survives resizing)."""
    height, width = image.shape[:2]
    value = 0
    for row in range(_GRID):
        for col in range(_GRID):
            y, x = (2 * row + 1) * height // (2 * _GRID), (2 * col + 1) * width // (2 * _GRID)
            value = value * 2 + int(image[y, x].mean() > 127)
    return value


def write_video(path: str | os.PathLike, *, codec: str = "libx264", size: tuple[int, int] = (64, 48),
                fps: int = 30, frames: int = 30, gop: int | None = None, rotation: int = 0,
                times: Sequence[float] | None = None, pix_fmt: str | None = None,
                audio: bool = False, options: dict | None = None,
                container_options: dict | None = None,
                draw: Callable[[int], np.ndarray] | None = None) -> Path:
    """Write a video and return its path.

    ``times``: presentation time in seconds of each frame (variable frame rate); by default
    frame i is at i / fps. ``gop``: at most this many frames between keyframes.
    ``rotation``: display rotation in degrees as FFmpeg stores it (counter-clockwise; a phone
    held upright writes -90). ``draw(i)`` returns frame i as an (height, width, 3) uint8
    array; the default draws ``index_image(i)``. ``options``: encoder options;
    ``container_options``: muxer options, e.g. ``{"movflags": "faststart"}``.
    """
    width, height = size
    draw = draw or (lambda i: index_image(i, width, height))
    times = list(times) if times is not None else [i / fps for i in range(frames)]
    with av.open(str(path), "w", options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=fps, options={**_FAST.get(codec, {}), **(options or {})})
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt or _PIX_FMT.get(codec, "yuv420p")
        stream.codec_context.time_base = _TIME_BASE
        if gop:
            stream.codec_context.gop_size = gop
        if rotation:
            stream.set_display_rotation(rotation)
        sound = _add_audio(out, str(path)) if audio else None
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(draw(i), format="rgb24")
            frame.pts, frame.time_base = round(t / _TIME_BASE), _TIME_BASE
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
        if sound is not None:
            _write_tone(out, sound, seconds=times[-1] if times else 0.0)
    return Path(path)


def write_audio_only(path: str | os.PathLike, seconds: float = 1.0) -> Path:
    """An audio file with no video stream (AAC in the container the suffix names)."""
    with av.open(str(path), "w") as out:
        _write_tone(out, _add_audio(out, str(path)), seconds)
    return Path(path)


def _add_audio(out, path: str):
    codec = "libopus" if path.endswith(".webm") else "aac"
    return out.add_stream(codec, rate=48000, layout="mono")


def _write_tone(out, stream, seconds: float) -> None:
    samples_per_frame = stream.codec_context.frame_size or 1024
    total = max(samples_per_frame, int(seconds * stream.rate))
    for start in range(0, total, samples_per_frame):
        t = (start + np.arange(samples_per_frame)) / stream.rate
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
        frame.sample_rate, frame.pts = stream.rate, start
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


def truncate(path: str | os.PathLike, fraction: float) -> Path:
    """Keep only the first ``fraction`` of the file's bytes, like an upload cut off."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * fraction)])
    return Path(path)


def corrupt_middle(path: str | os.PathLike, length: int = 2048, at: float = 0.5, seed: int = 0) -> Path:
    """Overwrite ``length`` bytes at ``at`` (a fraction of the file) with random noise."""
    data = bytearray(Path(path).read_bytes())
    start = int(len(data) * at)
    data[start:start + length] = np.random.default_rng(seed).integers(0, 256, length, dtype=np.uint8).tobytes()
    Path(path).write_bytes(bytes(data))
    return Path(path)


def read_frames(path: str | os.PathLike, limit: int | None = None) -> list[np.ndarray]:
    """The video's frames as RGB arrays (the first ``limit`` only, if given)."""
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if limit is not None and len(frames) == limit:
                break
            frames.append(frame.to_ndarray(format="rgb24"))
    return frames


def montage(path: str | os.PathLike, clips: Sequence[Sequence[np.ndarray]],
            cells: Sequence[tuple[int, int, int, int]], size: tuple[int, int], fps: int = 30,
            mirror: Sequence[bool] = (), background: int = 96) -> Path:
    """A video of ``size`` whose frame i shows frame i of each clip scaled (FFmpeg's scaler)
    into its cell (x, y, width, height), optionally mirrored, on a grey background: real
    people, several at once or small, from clips of one person."""
    width, height = size
    count = min(len(clip) for clip in clips)

    def draw(i: int) -> np.ndarray:
        canvas = np.full((height, width, 3), background, dtype=np.uint8)
        for k, (clip, (x, y, w, h)) in enumerate(zip(clips, cells)):
            image = av.VideoFrame.from_ndarray(clip[i], format="rgb24").reformat(w, h).to_ndarray(format="rgb24")
            canvas[y:y + h, x:x + w] = image[:, ::-1] if k < len(mirror) and mirror[k] else image
        return canvas

    return write_video(path, size=size, fps=fps, frames=count, draw=draw)


def write_image(path: str | os.PathLike, codec: str = "mjpeg", size: tuple[int, int] = (64, 48)) -> Path:
    """A still image (``mjpeg``: JPEG, ``png``) written by FFmpeg's image muxer, as a camera
    or an editor would save one."""
    width, height = size
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream(codec, rate=1)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "rgb24"
        frame = av.VideoFrame.from_ndarray(index_image(7, width, height), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return Path(path)
