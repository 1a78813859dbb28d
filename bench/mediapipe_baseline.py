"""Google's own BlazePose pipeline timed per frame: the baseline of bench/blazepose.py.

Runs mediapipe 0.10.21's legacy ``solutions.pose`` (single person, the same full landmark
model, smoothing and segmentation off) on a video's frames, decoded first, and prints one
JSON line: frames, ms per frame of ``Pose.process`` alone, frames with a pose. mediapipe pins
numpy<2, so this runs in a virtual environment of its own, never the project's:

    python3 -m venv /tmp/mediapipe-venv && /tmp/mediapipe-venv/bin/pip install mediapipe==0.10.21 av
    python bench/blazepose.py --mediapipe-python /tmp/mediapipe-venv/bin/python
"""

from __future__ import annotations

import json
import sys
import time

import av
import mediapipe as mp


def main() -> None:
    with av.open(sys.argv[1]) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    pose = mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1, smooth_landmarks=False,
                                  enable_segmentation=False)
    pose.process(frames[0])  # warm-up: graph start
    found = 0
    started = time.perf_counter()
    for frame in frames:
        found += pose.process(frame).pose_landmarks is not None
    seconds = time.perf_counter() - started
    print(json.dumps({"frames": len(frames), "ms_per_frame": 1e3 * seconds / len(frames), "found": found}))


if __name__ == "__main__":
    main()
