"""Reference landmarks from Google's own BlazePose pipeline, for test_blazepose_engine.py.

Runs the legacy single-person ``mediapipe.solutions.pose`` (model_complexity=1: the same
full landmark model the blazepose engine uses; smoothing off) on a real clip and writes
the landmarks of every ``--every``-th frame as JSON. mediapipe pins numpy<2, so this runs in
a virtual environment of its own, never the project's:

    python3 -m venv /tmp/mediapipe-venv
    /tmp/mediapipe-venv/bin/pip install mediapipe==0.10.21 av
    /tmp/mediapipe-venv/bin/python tests/reference/mediapipe_landmarks.py \
        ~/.cache/pose-pipeline/clips/carphone_pristine.mp4 tests/data/mediapipe_carphone.json

(``python -c "from pose_pipeline.assets.clips import clip, CARPHONE; print(clip(CARPHONE))"`` in
the project's environment fetches the clip.)
"""

from __future__ import annotations

import argparse
import json

import av
import mediapipe as mp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("video")
    parser.add_argument("output")
    parser.add_argument("--every", type=int, default=4, help="keep every n-th frame")
    args = parser.parse_args()
    pose = mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1, smooth_landmarks=False,
                                  enable_segmentation=False, min_detection_confidence=0.5,
                                  min_tracking_confidence=0.5)
    frames = {}
    with av.open(args.video) as container:
        for index, frame in enumerate(container.decode(video=0)):
            image = frame.to_ndarray(format="rgb24")
            height, width = image.shape[:2]
            found = pose.process(image)  # every frame: the solution tracks from frame to frame
            if index % args.every or found.pose_landmarks is None:
                continue
            landmarks = found.pose_landmarks.landmark
            frames[index] = {
                "joints_2d": [[round(p.x * width, 3), round(p.y * height, 3)] for p in landmarks],
                "visibility": [round(p.visibility, 4) for p in landmarks],
                "joints_3d": [[round(p.x, 5), round(p.y, 5), round(p.z, 5)]
                              for p in found.pose_world_landmarks.landmark],
            }
    document = {"source": f"mediapipe {mp.__version__} solutions.pose, model_complexity=1, smooth_landmarks=False",
                "video": args.video.rsplit("/", 1)[-1], "frames": frames}
    with open(args.output, "w") as fp:
        json.dump(document, fp, separators=(",", ":"))


if __name__ == "__main__":
    main()
