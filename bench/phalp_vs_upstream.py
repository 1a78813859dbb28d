"""The phalp engine against upstream's own track.py on CPU: wall time and time per stage.

Both sides on the same clip (the phalp tests' two people, --frames of them), the same
detector (Mask R-CNN RegNetY-4GF, upstream's ``maskrcnn``), the same random weights in
upstream's formats (tests/phalp_fixtures, written once under bench/out/phalp-home), each in
a fresh process on this machine, one after the other, --repeats times (A, B, A, B):

- upstream: 4D-Humans' ``HMR2_4dhuman(cfg).track()`` through the tests' harness
  (tests/phalp_fixtures/upstream_track.py: rendering off, CPU); per stage from its own
  methods: detect (``get_detections``), hmr2 (``get_human_features``), associate
  (``tracker.predict`` + ``update``).
- ours: ``PhalpEngine`` over the decoded clip in one chunk (``session.stage_seconds``).

Needs the upstream venv (.ci/build-upstream):
    .venv-upstream/bin/python bench/phalp_vs_upstream.py [--frames 10] [--repeats 1]
Writes bench/out/phalp_vs_upstream.json. What the CPU ratio says about a GPU: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
sys.path[:0] = [str(ROOT / "bench"), str(TESTS)]

from common import OUT, log, machine, median, table  # noqa: E402

OPTIONS = {"device": "cpu", "min_box_width": 40, "min_box_height": 40, "n_init": 3}
OVERRIDES = {"phalp.detector": "maskrcnn", "phalp.small_w": 40, "phalp.small_h": 40, "phalp.n_init": 3}
STAGES = ("detect", "hmr2", "associate")

_OURS = """
import json, sys, time
t0 = time.perf_counter()
from pose_pipeline.engines.base import VideoSpec
from pose_pipeline.engines.phalp import PhalpEngine
from pose_pipeline.video import ChunkDecoder, DecodeOptions, probe
engine = PhalpEngine(**json.loads(sys.argv[2]))
startup = time.perf_counter() - t0
info = probe(sys.argv[1])
session = engine.open(VideoSpec(*info.display_size, info.fps))
t1 = time.perf_counter()
people = 0
with ChunkDecoder(sys.argv[1], info, DecodeOptions()) as decoder:
    for chunk in decoder:
        out = session.process(chunk)
        people += sum(len(f.people) for f in out.frames) + len(out.corrections)
print(json.dumps({"seconds": {"startup": startup, "track": time.perf_counter() - t1, **session.stage_seconds},
                  "people": people}))
"""


def child_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_HOME", "XDG_CACHE_HOME", "FVCORE_CACHE")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS / "phalp_fixtures/site"), str(ROOT)])
    return {**env, "HOME": str(home)}


def run(command: list[str], env: dict[str, str]) -> dict:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{command[1]} failed:\n{done.stderr[-4000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall": wall, **report["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    from phalp_fixtures import clip
    from phalp_fixtures.weights import UpstreamCache, write_cache

    home = OUT / "phalp-home"
    if not (home / ".cache/4DHumans/hmr2_data.tar.gz").is_file():
        log("writing random weights (about 3.4 GB) ...")
        write_cache(home)
    cache = UpstreamCache(home)
    work = OUT / f"phalp-clip-{args.frames}"
    video = clip.write_clip(work.with_suffix(".mp4"), args.frames)
    frames = clip.write_frame_folder(clip.decoded_frames(video), work / "clip")
    env = child_env(home)
    runs: dict[str, list[dict]] = {"upstream": [], "ours": []}
    for repeat in range(args.repeats):
        log(f"round {repeat + 1}: upstream track.py ...")
        runs["upstream"].append(run([sys.executable, str(TESTS / "phalp_fixtures/upstream_track.py"), str(frames),
                                     str(work / "upstream-out"), json.dumps(OVERRIDES)], env))
        log(f"round {repeat + 1}: our engine ...")
        runs["ours"].append(run([sys.executable, "-c", _OURS, str(video), json.dumps(cache.engine_options(**OPTIONS))],
                                env))
    keys = ("wall", "startup", "track", *STAGES)
    medians = {side: {k: median(r[k] for r in results) for k in keys} for side, results in runs.items()}
    rows = [{"stage": k, "upstream_s": round(medians["upstream"][k], 2), "ours_s": round(medians["ours"][k], 2),
             "upstream/ours": round(medians["upstream"][k] / medians["ours"][k], 2)} for k in keys]
    print(table(rows))
    result = {"frames": args.frames, "repeats": args.repeats, "machine": machine(), "medians": medians,
              "runs": runs, "options": OPTIONS, "upstream_overrides": OVERRIDES}
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "phalp_vs_upstream.json"
    path.write_text(json.dumps(result, indent=2))
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
