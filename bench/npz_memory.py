"""NPZ memory: peak memory of writing the NPZ result of a short and a long video, with
SMPL-sized people, for ``NpzWriter`` (per-track spill files merged at the end) against the
previous design (every person of the video held until the end, then ``numpy.savez``),
reimplemented here as the baseline.

Each run is a fresh process that makes the people frame by frame (SMPL pose and shape,
translation, 44 joints in 3D and 2D with confidences, as the phalp engine gives them; fresh
arrays for every person, as decoding results gives them), feeds them to the writer, and
reports its peak resident set above what it held before the first frame (``VmHWM`` from
/proc/self/status, the kernel's true peak), the time, and the file's size. Runs alternate
(bounded short, baseline short, bounded long, baseline long, ...); medians are reported.
Target: the bounded writer's peak for the long video within 1.2x of the short one's.

Full mode: 4 people in 3000 frames (100 s at 30 fps) and 18000 frames (10 minutes).

    python bench/npz_memory.py [--quick] [--repeats N]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

PEOPLE = 4
JOINTS = 44


def child(writer_name: str, frames: int, out: str) -> dict:
    """One run, in this process: write the result of ``frames`` frames; report its cost."""
    import numpy as np

    from pose_pipeline.results.schema import (
        EngineInfo,
        Frame,
        Person,
        Processing,
        ResultHeader,
        SmplParams,
        TrackSummary,
        VideoInfo,
    )
    from pose_pipeline.results.writers import NpzWriter

    header = ResultHeader(EngineInfo("bench", "1", "SMPL-sized people", True, "smpl_44"),
                          VideoInfo(1280, 720, 30.0, frames / 30, frames, 0, "h264", "mp4"),
                          Processing(None, 1280, 1280, 720))
    rng = np.random.default_rng(0)

    def people(index: int) -> tuple[Person, ...]:
        values = rng.standard_normal((PEOPLE, 3 + 69 + 10 + 3 + JOINTS * 6)).astype(np.float32)
        out = []
        for track, v in enumerate(values, start=1):
            j3 = v[85:85 + 3 * JOINTS].reshape(JOINTS, 3).copy()
            j2 = v[85 + 3 * JOINTS:85 + 5 * JOINTS].reshape(JOINTS, 2).copy()
            conf = v[85 + 5 * JOINTS:].copy()
            out.append(Person(track, np.array([index, 10, index + 50, 200], np.float32), 0.9, True,
                              SmplParams(v[:3].copy(), v[3:72].reshape(23, 3).copy(), v[72:82].copy()),
                              v[82:85].copy(), j3, j2, conf))
        return tuple(out)

    writer = NpzWriter(out) if writer_name == "bounded" else _InMemoryNpzWriter(out)
    before = _status("VmRSS")
    _reset_peak()
    started = time.perf_counter()
    writer.begin(header)
    for index in range(frames):
        writer.frame(Frame(index, index, index / 30, people(index)))
    writer.end(TrackSummary(track, 0, frames - 1, frames, 0) for track in range(1, PEOPLE + 1))
    seconds = time.perf_counter() - started
    return {"peak_above_start_bytes": _status("VmHWM") - before, "seconds": seconds,
            "file_bytes": Path(out).stat().st_size}


class _InMemoryNpzWriter:
    """The NPZ writer before it was bounded: every person kept until ``end``."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._header = None
        self._frames: list[tuple[int, int, float]] = []
        self._tracks: dict[int, list] = {}

    def begin(self, header) -> None:
        self._header = header

    def frame(self, frame) -> None:
        self._frames.append((frame.index, frame.source_index, frame.time_s))
        for person in frame.people:
            self._tracks.setdefault(person.track_id, []).append((frame.index, person))

    def end(self, tracks) -> None:
        import numpy as np

        frames = np.array(self._frames, dtype=np.float64).reshape(-1, 3)
        arrays = {"meta": np.array(json.dumps(self._header.to_dict())),
                  "tracks": np.array(json.dumps([t.to_dict() for t in tracks])),
                  "frame_index": frames[:, 0].astype(np.int64), "frame_source_index": frames[:, 1].astype(np.int64),
                  "frame_time": frames[:, 2], "track_ids": np.array(sorted(self._tracks), dtype=np.int64)}
        for track_id, entries in self._tracks.items():
            people = [p for _, p in entries]
            prefix = f"track_{track_id}."
            arrays[prefix + "frame"] = np.array([i for i, _ in entries], dtype=np.int64)
            arrays[prefix + "bbox"] = np.stack([p.bbox for p in people]).astype(np.float32)
            arrays[prefix + "score"] = np.array([p.score for p in people], dtype=np.float32)
            arrays[prefix + "detected"] = np.array([p.detected for p in people], dtype=bool)
            for name in ("global_orient", "body_pose", "betas"):
                arrays[prefix + name] = np.stack([getattr(p.smpl, name) for p in people]).astype(np.float32)
            for name in ("translation", "joints_3d", "joints_2d", "joints_confidence"):
                arrays[prefix + name] = np.stack([getattr(p, name) for p in people]).astype(np.float32)
        np.savez(self._path, **arrays)


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(field + ":"))


def _reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def one_run(writer_name: str, frames: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "result.npz")
        done = subprocess.run([sys.executable, __file__, "--child", writer_name, str(frames), out],
                              capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    args = common.parse_args(__doc__ or "", "1500 and 6000 frames (about 30 s)", default_repeats=2, port=False)
    short, long = (1500, 6000) if args.quick else (3000, 18000)
    runs = {f"{writer} {frames}": (lambda w=writer, f=frames: one_run(w, f))
            for frames in (short, long) for writer in ("bounded", "baseline")}
    results = common.interleaved(runs, args.repeats)
    rows = []
    for name, measured in results.items():
        writer, frames = name.split()
        rows.append({"writer": writer, "frames": int(frames), "people": PEOPLE,
                     "peak MiB": common.mib(common.median(r["peak_above_start_bytes"] for r in measured)),
                     "seconds": common.median(r["seconds"] for r in measured),
                     "file MiB": common.mib(common.median(r["file_bytes"] for r in measured))})
    by = {(r["writer"], r["frames"]): r for r in rows}
    summary = {
        "bounded long/short peak": by["bounded", long]["peak MiB"] / by["bounded", short]["peak MiB"],
        "baseline long/short peak": by["baseline", long]["peak MiB"] / by["baseline", short]["peak MiB"],
        "bounded/baseline peak, long": by["bounded", long]["peak MiB"] / by["baseline", long]["peak MiB"],
        "bounded/baseline time, long": by["bounded", long]["seconds"] / by["baseline", long]["seconds"],
    }
    print(common.table(rows))
    print(common.table([{"ratio": k, "value": v} for k, v in summary.items()]))
    common.write_result("npz_memory", args.quick, {"rows": rows, "summary": summary, "runs": results})


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]), sys.argv[4])))
    else:
        main()
