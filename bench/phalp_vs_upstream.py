"""The phalp engine against upstream's own track.py: speed, memory per stage, equal results.

Both sides get the same decoded frames of one clip, the same detector and the same random
weights in upstream's formats (tests/phalp_fixtures), each run in a fresh process, one after
the other:

- upstream: 4D-Humans' ``HMR2_4dhuman(cfg).track()`` through the tests' harness
  (tests/phalp_fixtures/upstream_track.py: rendering off; on CUDA its renderer modules are
  inert, as the machine has no EGL). Stages timed on its own methods: detect
  (``get_detections``), hmr2 (``get_human_features``: crops, HMR2, texture, appearance),
  associate (``tracker.predict`` + ``update``); "rest" is the remainder of ``track()``.
- ours: ``PhalpEngine`` over the frames in chunks of ``--chunk-frames``, once per
  configuration of ``--configs``: ``fp32`` (what upstream computes), ``bf16`` (the two
  backbones in bf16, ``precision: bf16``), ``hmr2-bf16`` (HMR2's alone), ``8gb`` (bf16 under a CUDA allocator cap of
  ``--card-gib`` less ``--reserve-gib``, with the batch sizes of serve_config.8gb.yaml).
  Stages from ``session.stages``.

Reported per side: frames per second of tracking (start-up apart), seconds and peak CUDA
memory (torch's allocator, weights included) per stage, start-up; and the comparison: ours
``fp32`` against upstream (the same track ids and ``detected`` flags in every frame, the
largest deviation of each field), every other configuration against ours ``fp32``.

    # the GPU run (bench/device/run prepares the machine and calls this):
    python bench/phalp_vs_upstream.py --device cuda --detector vitdet --video bikes.mp4 --frames 96
    # on the CPU, in the upstream venv (.ci/build-upstream): the tests' clip, light detector
    .venv-upstream/bin/python bench/phalp_vs_upstream.py [--frames 10] [--configs fp32]

Writes --out (default bench/out/phalp_vs_upstream.json). Weights are written once under
--home (about 3.4 GB; ViTDet-H adds 2.5 GB, its person bias fitted so that it keeps about
--people per frame of the clip, as a trained detector would on a street).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
sys.path[:0] = [str(ROOT), str(TESTS)]

STAGES = ("detect", "hmr2", "associate")
FIELDS = ("bbox", "joints_2d", "joints_3d", "translation")
SMPL_FIELDS = ("global_orient", "body_pose", "betas")
#: Tracker and detector settings of both sides: upstream's, but tracks confirm on their
#: third detection and people from 40 px are kept (random weights find smaller regions).
TRACKING = {"min_box_width": 40, "min_box_height": 40, "n_init": 3}
UPSTREAM_OVERRIDES = {"phalp.small_w": 40, "phalp.small_h": 40, "phalp.n_init": 3}
#: Our configurations: engine options on top of TRACKING and the detector.
CONFIGS: dict[str, dict[str, Any]] = {
    "fp32": {"precision": "fp32", "detector_batch": 4, "max_batch": 32},
    "bf16": {"precision": "bf16", "detector_batch": 4, "max_batch": 32},
    # HMR2's backbone alone in bf16: the same detections as fp32 (the detector stays fp32), so
    # the comparison with fp32 bounds what bf16 changes in the per-person results
    "hmr2-bf16": {"precision": "bf16", "detector_precision": "fp32", "detector_batch": 4, "max_batch": 32},
}


def card_options() -> dict[str, Any]:
    """serve_config.8gb.yaml's engine options (its detector aside: the run names one)."""
    import yaml

    config = yaml.safe_load((ROOT / "serve_config.8gb.yaml").read_text())
    options = dict(config["applications"][0]["args"]["settings"]["engine"]["options"])
    options.pop("detector", None)
    return options


#: The configuration of one 8 GB card; the allocator cap comes from --card-gib/--reserve-gib.
CONFIGS["8gb"] = card_options()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the people of a run, as plain arrays --------------------------------------------------------


def person_fields(person) -> dict[str, Any]:
    values = {name: np.asarray(getattr(person, name), dtype=np.float64) for name in FIELDS}
    values.update({name: np.asarray(getattr(person.smpl, name), dtype=np.float64) for name in SMPL_FIELDS})
    return {**values, "detected": bool(person.detected)}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two xyxy boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - width * height
    return float(width * height / union) if union > 0 else 0.0


def compare(ours: list[dict[int, dict]], theirs: list[dict[int, dict]]) -> dict[str, Any]:
    """Frames with other track ids or detected flags; the largest deviation of each field over
    the people both report under the same id (pixels, metres, radians); and, whatever the ids,
    the share of ``theirs``' detected people that ``ours`` detects too (box IoU >= 0.5)."""
    differing, compared, detected, found = [], 0, 0, 0
    deviation = dict.fromkeys(FIELDS + SMPL_FIELDS, 0.0)
    for index, (a, b) in enumerate(zip(ours, theirs)):
        if sorted(a) != sorted(b) or any(a[t]["detected"] != b[t]["detected"] for t in a if t in b):
            differing.append(index)
        for tid in set(a) & set(b):
            compared += 1
            for name in deviation:
                deviation[name] = max(deviation[name], float(np.max(np.abs(a[tid][name] - b[tid][name]))))
        for person in (p for p in b.values() if p["detected"]):
            detected += 1
            found += any(q["detected"] and iou(q["bbox"], person["bbox"]) >= 0.5 for q in a.values())
    return {"frames": min(len(ours), len(theirs)), "person_frames_compared": compared,
            "people_reported": sum(len(frame) for frame in theirs), "frames_with_other_ids": differing,
            "detections_found": found / detected if detected else None, "max_abs_deviation": deviation}


# --- one side per process ------------------------------------------------------------------------


def run_ours(frames_path: str, spec: dict[str, Any], out: str) -> dict[str, Any]:
    """(in a fresh process) Our engine over the frames; writes the people per frame to ``out``."""
    import torch

    from pose_pipeline.engines.base import VideoSpec
    from pose_pipeline.engines.gpu import StageMeter, cap_memory
    from pose_pipeline.engines.phalp import PhalpEngine
    from pose_pipeline.video.decode import DecodeCursor, FrameChunk

    frames = np.load(frames_path)
    fraction = None
    if spec.get("cuda_memory_fraction"):  # as a Tracking replica does with tracking.cuda_memory_fraction
        fraction = cap_memory(torch.device("cuda"), spec["cuda_memory_fraction"])
    started = time.perf_counter()
    engine = PhalpEngine(**spec["options"])
    startup = time.perf_counter() - started
    cuda = engine.device.type == "cuda"
    loaded = torch.cuda.max_memory_allocated() if cuda else 0
    session = engine.open(VideoSpec(frames.shape[2], frames.shape[1], spec["fps"]))
    session.stages = StageMeter(engine.device, peak_memory=True)
    people: list[dict[int, dict]] = []
    started = time.perf_counter()
    step = spec["chunk_frames"]
    for k, first in enumerate(range(0, len(frames), step)):
        part = np.ascontiguousarray(frames[first:first + step])
        indices = np.arange(first, first + len(part))
        chunk = FrameChunk(index=k, frames=part, source_indices=indices, times=indices / spec["fps"],
                           first_frame=first, is_last=first + step >= len(frames), cursor=DecodeCursor())
        output = session.process(chunk)
        for frame in output.frames:
            people.append({p.track_id: person_fields(p) for p in frame.people})
        for index, person in output.corrections:
            people[index][person.track_id] = person_fields(person)
    track = time.perf_counter() - started
    with open(out, "wb") as f:
        pickle.dump(people, f)
    seconds = {"startup": startup, "track": track, **session.stages.seconds}
    peak = {"startup": loaded, **session.stages.peak_bytes}
    memory = {}
    if cuda:  # what the card gives this process: the allocator's reserve and the rest (context, libraries)
        memory = {"reserved_bytes": torch.cuda.memory_reserved(), "process_bytes": process_gpu_bytes()}
    return {"seconds": seconds, "peak_bytes": peak, "memory_fraction": fraction,
            "gpu_memory": memory, "batch_limits": session.batch_limits}


def process_gpu_bytes() -> int | None:
    """This process's memory on the GPU as the driver counts it (nvidia-smi), or None."""
    try:
        listed = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                                capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in listed.splitlines():
        pid, _, mib = line.partition(",")
        if pid.strip() == str(os.getpid()):
            return int(mib) * 2**20
    return None


def upstream_people(pkl: str) -> list[dict[int, dict]]:
    import joblib

    from pose_pipeline.engines.phalp.convert import record_to_person

    result = joblib.load(pkl)
    frames = []
    for name in sorted(result, key=lambda n: result[n]["time"]):
        entry = result[name]
        frame = {}
        for i, tid in enumerate(entry["tid"]):
            record = {key: entry[key][i]
                      for key in ("bbox", "smpl", "camera", "3d_joints", "2d_joints", "size", "conf")}
            frame[int(tid)] = person_fields(record_to_person(record, tid, entry["tracked_time"][i] == 0))
        frames.append(frame)
    return frames


def child(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-6000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(report: dict[str, Any], frames: int) -> dict[str, Any]:
    seconds = report["seconds"]
    rest = seconds["track"] - sum(seconds.get(stage, 0.0) for stage in STAGES)
    return {**report, "fps": frames / seconds["track"], "seconds": {**seconds, "rest": rest}}


# --- the whole run -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--detector", choices=("maskrcnn", "vitdet"), default="maskrcnn")
    parser.add_argument("--video", type=Path, help="default: the phalp tests' clip (two people, 320x180)")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--chunk-frames", type=int, default=32)
    parser.add_argument("--configs", default="fp32", help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--people", type=float, default=4.0, help="ViTDet-H: people per frame its bias aims at")
    parser.add_argument("--card-gib", type=float, default=8.0)
    parser.add_argument("--reserve-gib", type=float, default=1.0,
                        help="of the card, for the CUDA context and the display (outside torch's allocator)")
    parser.add_argument("--home", type=Path, default=ROOT / "bench/out/phalp-home")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/out/phalp_vs_upstream.json")
    parser.add_argument("--ours", nargs=3, metavar=("FRAMES_NPY", "SPEC_JSON", "OUT_PKL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ours:  # the child process of one configuration
        print(json.dumps(run_ours(args.ours[0], json.loads(args.ours[1]), args.ours[2])))
        return
    configs = args.configs.split(",") if args.configs else []
    if unknown := set(configs) - set(CONFIGS):
        parser.error(f"unknown configuration(s): {', '.join(sorted(unknown))}")

    from pose_pipeline.engines.phalp.upstream import install_render_stubs

    install_render_stubs()  # the weights are written by upstream's code, which imports its renderers
    from phalp_fixtures import clip
    from phalp_fixtures.weights import VITDET_PATH, UpstreamCache, write_cache, write_vitdet

    work = args.out.parent / f"{args.out.stem}-work"
    work.mkdir(parents=True, exist_ok=True)
    video = args.video or clip.write_clip(work / "clip.mp4", args.frames)
    frames = clip.decoded_frames(video)[:args.frames]
    fps = 25.0
    np.save(work / "frames.npy", frames)
    folder = clip.write_frame_folder(frames, work / "frames" / "clip")
    report: dict[str, Any] = {"device": args.device, "detector": args.detector, "video": video.name,
                              "frames": len(frames), "frame_size": [frames.shape[2], frames.shape[1]],
                              "chunk_frames": args.chunk_frames, "tracking": TRACKING, "machine": machine(args.device)}
    started = time.perf_counter()
    if not (args.home / ".cache/4DHumans/hmr2_data.tar.gz").is_file():
        log(f"writing random weights under {args.home} ...")
        write_cache(args.home)
    if args.detector == "vitdet" and not (args.home / ".torch/iopath_cache" / VITDET_PATH).is_file():
        log("writing a random ViTDet-H ...")
        sample = frames[:: max(1, len(frames) // 4)][:4]
        report["vitdet_people_per_frame"] = write_vitdet(args.home, sample, args.people, min_size=(40.0, 40.0),
                                                         device=args.device)
        if args.device == "cuda":
            import torch

            torch.cuda.empty_cache()  # nothing of this process stays on the GPU the runs measure
    report["weights_seconds"] = time.perf_counter() - started
    cache = UpstreamCache(args.home)
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_HOME", "XDG_CACHE_HOME", "FVCORE_CACHE")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS / "phalp_fixtures/site"), str(ROOT),
                                         *filter(None, [env.get("PYTHONPATH")])])
    env["HOME"] = str(args.home)

    log("upstream track.py ...")
    upstream = child([sys.executable, str(TESTS / "phalp_fixtures/upstream_track.py"), str(folder),
                      str(work / "upstream-out"), json.dumps({**UPSTREAM_OVERRIDES, "phalp.detector": args.detector}),
                      args.device], env)
    theirs = upstream_people(upstream.pop("pkl"))
    report["upstream"] = summary(upstream, len(frames))
    write(args.out, report)
    ours: dict[str, list[dict[int, dict]]] = {}
    report["ours"], report["comparison"] = {}, {}
    for name in configs:
        options = cache.engine_options(device=args.device, detector=args.detector, **TRACKING, **CONFIGS[name])
        spec: dict[str, Any] = {"options": options, "fps": fps, "chunk_frames": args.chunk_frames}
        if name == "8gb" and args.device == "cuda":
            import torch

            total = torch.cuda.get_device_properties(0).total_memory
            spec["cuda_memory_fraction"] = (args.card_gib - args.reserve_gib) * 2**30 / total
        log(f"ours, {name} ...")
        result = child([sys.executable, __file__, "--ours", str(work / "frames.npy"), json.dumps(spec),
                        str(work / f"ours-{name}.pkl")], env)
        with open(work / f"ours-{name}.pkl", "rb") as f:
            ours[name] = pickle.load(f)
        speedup = report["upstream"]["seconds"]["track"] / result["seconds"]["track"]
        report["ours"][name] = {**summary(result, len(frames)), "options": CONFIGS[name],
                                "speedup_over_upstream": speedup}
        reference = "upstream" if name == "fp32" else "fp32"
        if reference == "upstream" or "fp32" in ours:
            report["comparison"][f"{name} vs {reference}"] = compare(ours[name], theirs if reference == "upstream"
                                                                     else ours["fp32"])
        write(args.out, report)
    print(text_summary(report))
    log(f"wrote {args.out}")


def machine(device: str) -> dict[str, Any]:
    import platform

    import torch

    info = {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
    return info


def write(path: Path, report: dict[str, Any]) -> None:
    """Written after every side, so that a run cut short still leaves what it measured."""
    path.write_text(json.dumps(report, indent=2, default=float))


def text_summary(report: dict[str, Any]) -> str:
    rows = [("upstream", report["upstream"])] + list(report["ours"].items())
    lines = ["| run | fps | x upstream | " + " | ".join(f"{s} s" for s in (*STAGES, "rest"))
             + " | peak GiB (detect / hmr2) |", "|---" * 8 + "|"]
    for name, side in rows:
        s, peak = side["seconds"], side["peak_bytes"]
        ratio = side.get("speedup_over_upstream", 1.0)
        lines.append(f"| {name} | {side['fps']:.2f} | {ratio:.2f} | "
                     + " | ".join(f"{s.get(stage, 0.0):.2f}" for stage in (*STAGES, "rest"))
                     + f" | {peak.get('detect', 0) / 2**30:.2f} / {peak.get('hmr2', 0) / 2**30:.2f} |")
    for name, comparison in report["comparison"].items():
        lines.append(f"{name}: {comparison['person_frames_compared']} person-frames, frames with other ids "
                     f"{comparison['frames_with_other_ids']}, detections found {comparison['detections_found']}, "
                     "max deviation "
                     + ", ".join(f"{k} {v:.2g}" for k, v in comparison["max_abs_deviation"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
