"""The blazepose engine's cost per frame on 2 cores: one person and three people at 720p, with
the detector's and the landmark model's shares; against Google's own pipeline; and through
the service against the CLI.

Videos: the man of the real clip ``carphone`` (pose_pipeline.assets.clips) scaled into a 1280x720
frame, alone (880x720) or three times side by side (426x348 each); 120 frames, and 360 for the
service (the clip played forwards, backwards, forwards). All under bench/out/videos/.

1. In this process, frames decoded beforehand: ms per frame of the engine's session
   (``process``), split into the detector (crop, model, decoding, NMS), the landmark model
   (crop, model, heatmap refinement, mask) and the rest (boxes, tracker). Target: one person
   at 720p in 40 ms per frame or less.
2. With ``--mediapipe-python`` (an interpreter with mediapipe 0.10.21, see
   bench/mediapipe_baseline.py): its legacy single-person pipeline on the one-person video,
   ms per frame of ``Pose.process`` alone, interleaved with ours (which follows everyone).
3. The service (HTTP job on a local cluster, the embedded CPU config, blazepose) against
   ``pose-pipeline track`` (a fresh process), both end to end on the 360- and 120-frame
   one-person videos: ms per frame as the slope between the two lengths, and the ratio.

    python bench/blazepose.py [--quick] [--repeats N] [--port 87xx] [--mediapipe-python PATH]
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

import common

SIZE = (1280, 720)
ONE = [(200, 0, 880, 720)]
THREE = [(x, 372, 426, 348) for x in (1, 427, 853)]  # side by side, cut off by the frame's bottom as in the clip


def videos(quick: bool) -> dict[str, Path]:
    from pose_pipeline.assets.clips import CARPHONE, clip

    source = clip(CARPHONE, notice=common.log)
    found = {"one": common.clip_montage("carphone_720p_1p", source, ONE, SIZE),
             "three": common.clip_montage("carphone_720p_3p", source, THREE, SIZE)}
    if not quick:
        found["one_long"] = common.clip_montage("carphone_720p_1p_x3", source, ONE, SIZE, loops=3)
    return found


class Timed:
    """Wraps a bound method, adding up its wall time and calls."""

    def __init__(self, method) -> None:
        self.method, self.seconds, self.calls = method, 0.0, 0

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.method(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1


def engine_run(engine, path: Path) -> dict:
    """The session over the whole video (decoded first, one chunk), timed by part."""
    from pose_pipeline.engines.base import VideoSpec
    from pose_pipeline.video import ChunkDecoder, DecodeOptions, probe

    info = probe(path)
    width, height = info.display_size
    with ChunkDecoder(path, info, DecodeOptions(chunk_bytes=(info.frame_count + 1) * width * height * 3,
                                                max_side=None)) as decoder:
        chunk = decoder.next_chunk()
    session = engine.open(VideoSpec(width, height, info.fps))
    session.detector.detect = detector = Timed(session.detector.detect)
    session.landmarker.run = landmarker = Timed(session.landmarker.run)
    started = time.perf_counter()
    output = session.process(chunk)
    total = time.perf_counter() - started
    session.close()
    frames = len(chunk)
    people = sum(len(f.people) for f in output.frames) + len(output.corrections)
    return {"frames": frames, "people_per_frame": people / frames, "ms_per_frame": 1e3 * total / frames,
            "detector_ms_per_frame": 1e3 * detector.seconds / frames, "detector_runs": detector.calls,
            "landmarks_ms_per_frame": 1e3 * landmarker.seconds / frames, "landmark_runs": landmarker.calls,
            "landmarks_ms_per_run": 1e3 * landmarker.seconds / max(landmarker.calls, 1),
            "other_ms_per_frame": 1e3 * (total - detector.seconds - landmarker.seconds) / frames}


def mediapipe_run(python: str, path: Path) -> dict:
    script = Path(__file__).with_name("mediapipe_baseline.py")
    done = subprocess.run([python, str(script), str(path)], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    def mediapipe_option(parser) -> None:
        parser.add_argument("--mediapipe-python",
                            help="an interpreter with mediapipe 0.10.21 (bench/mediapipe_baseline.py)")

    args = common.parse_args(__doc__, "the 120-frame videos, one round, no service", extra=mediapipe_option)
    from pose_pipeline.config import Settings
    from pose_pipeline.engines.registry import EngineRegistry
    from pose_pipeline.cli.models import ensure_models

    ensure_models(Settings.from_dict({"engine": {"name": "blazepose"}}), common.log)
    engine = EngineRegistry().create("blazepose", {})
    paths = videos(args.quick)
    runs = {"one": lambda: engine_run(engine, paths["one"]), "three": lambda: engine_run(engine, paths["three"])}
    if args.mediapipe_python:
        runs["mediapipe_one"] = lambda: mediapipe_run(args.mediapipe_python, paths["one"])
    engine_run(engine, paths["one"])  # warm-up: XNNPACK's first runs
    results = common.interleaved(runs, args.repeats)
    rows = []
    for name in ("one", "three"):
        keys = [k for k in results[name][0] if k != "frames"]
        rows.append({"video": f"720p, {name} person{'s' if name == 'three' else ''}",
                     **{k: common.median(r[k] for r in results[name]) for k in keys}})
    print("1. blazepose engine in this process, frames decoded beforehand (medians):")
    print(common.table(rows))
    one_ms = rows[0]["ms_per_frame"]
    print(f"target (one person at 720p <= 40 ms/frame): {'met' if one_ms <= 40 else 'MISSED'} ({one_ms:.1f} ms)")
    payload = {"videos": {k: v.name for k, v in paths.items()}, "repeats": args.repeats, "engine": rows,
               "target_met": one_ms <= 40, "raw": results}
    if args.mediapipe_python:
        mp_ms = common.median(r["ms_per_frame"] for r in results["mediapipe_one"])
        payload["mediapipe_ms_per_frame"] = mp_ms
        print(f"\n2. mediapipe 0.10.21 solutions.pose (one person, Pose.process only): {mp_ms:.1f} ms/frame; "
              f"blazepose / mediapipe = {one_ms / mp_ms:.2f}")
    if not args.quick:
        payload["service"] = service_vs_cli(paths, args)
    common.write_result("blazepose", args.quick, payload)
    return 0


def service_vs_cli(paths: dict[str, Path], args) -> dict:
    """End-to-end time per frame, service against CLI, from the slope between two lengths."""
    frames = {"one_long": 360, "one": 120}
    service = common.LocalService(args.port, settings=common.service_settings(Path(tempfile.mkdtemp(dir=common.OUT)),
                                                                               engine={"name": "blazepose"}))
    settings = {k: v for k, v in service.settings.items() if k != "store"}
    with tempfile.TemporaryDirectory(dir=common.OUT) as tmp, common.cli_config(settings) as config, service as svc:
        svc.run_job(paths["one"])  # warm-up: the replica's first chunk
        runs = {}
        for name in frames:
            output = Path(tmp) / f"{name}.json"
            runs[f"cli_{name}"] = lambda name=name, output=output: common.run_cli_track(paths[name], output, config)
            runs[f"service_{name}"] = lambda name=name: svc.run_job(paths[name], formats="json")["total_s"]
        results = common.interleaved(runs, args.repeats)
    seconds = {name: common.median(values) for name, values in results.items()}
    slope = {side: 1e3 * (seconds[f"{side}_one_long"] - seconds[f"{side}_one"]) / (frames["one_long"] - frames["one"])
             for side in ("cli", "service")}
    rows = [{"side": side, "120 frames s": seconds[f"{side}_one"], "360 frames s": seconds[f"{side}_one_long"],
             "ms/frame (slope)": slope[side]} for side in ("cli", "service")]
    print("\n3. one person at 720p end to end: service (HTTP job) vs CLI (fresh process), medians:")
    print(common.table(rows))
    print(f"service / CLI per frame: {slope['service'] / slope['cli']:.2f}")
    return {"rows": rows, "ratio_per_frame": slope["service"] / slope["cli"], "raw": results}


if __name__ == "__main__":
    raise SystemExit(main())
