"""The two BlazePose model files: where they are, checking them, fetching them.

The files (Apache 2.0) are the ones Google ships inside the ``mediapipe`` 0.10.21 wheel;
``MODELS.fetch`` takes them out of that wheel (``pose_pipeline.assets.wheels``), with its licence
and a notice that says where they come from. mediapipe itself is never installed or
imported, and nothing is fetched from a model hub. An operator may instead point the engine
at files of their own: those are checked by their tensors when they load, not by hash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ...errors import EngineUnavailable
from ...assets.wheels import PinnedWheel, WheelFile, cache_dir, sha256_of
from ...files import write_atomically

FETCH_COMMAND = "pose-pipeline models fetch"

DETECTOR = WheelFile("pose_detection.tflite", "mediapipe/modules/pose_detection/pose_detection.tflite",
                     "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c")
LANDMARKS = WheelFile("pose_landmark_full.tflite", "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
                      "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f")
MODELS = PinnedWheel("mediapipe==0.10.21", (DETECTOR, LANDMARKS),
                     extras=(("mediapipe-0.10.21.dist-info/LICENSE", "LICENSE"),))
NOTICE = (f"The .tflite files here are BlazePose models taken from the {MODELS.requirement} wheel on PyPI,\n"
          "published by Google under the Apache License 2.0 (LICENSE, from the same wheel).\n"
          + "".join(f"{f.name}: {f.member}, sha256 {f.sha256}\n" for f in MODELS.files))


def default_models_dir() -> Path:
    return cache_dir("blazepose")


def fetch(models_dir: Path) -> list[Path]:
    """The model files, licence and notice into ``models_dir``; returns the files written."""
    return [*MODELS.fetch(models_dir), write_atomically(models_dir / "NOTICE", NOTICE.encode())]


@dataclass(frozen=True)
class ModelPaths:
    detector: Path
    landmarks: Path
    models_dir: Path
    #: Files from the models directory are checked against their sha256; files an operator
    #: names explicitly are not (they may be other versions of the models).
    check_detector: bool = True
    check_landmarks: bool = True

    @classmethod
    def resolve(cls, models_dir: str | os.PathLike | None = None, detector: str | os.PathLike | None = None,
                landmarks: str | os.PathLike | None = None) -> ModelPaths:
        root = Path(models_dir).expanduser() if models_dir else default_models_dir()
        return cls(detector=Path(detector).expanduser() if detector else root / DETECTOR.name,
                   landmarks=Path(landmarks).expanduser() if landmarks else root / LANDMARKS.name,
                   models_dir=root, check_detector=detector is None, check_landmarks=landmarks is None)

    def fetch_hint(self) -> str:
        return f"`{FETCH_COMMAND} --models-dir {self.models_dir}` fetches them"

    def check(self) -> None:
        """Raise ``EngineUnavailable`` naming every file that is missing or not the expected one."""
        problems = []
        for path, model, checked in ((self.detector, DETECTOR, self.check_detector),
                                     (self.landmarks, LANDMARKS, self.check_landmarks)):
            if not path.is_file():
                problems.append(f"{path} is missing")
            elif checked and (digest := sha256_of(path)) != model.sha256:
                problems.append(f"{path} is not the expected file ({path.stat().st_size} bytes, sha256 {digest}, "
                                f"expected {model.sha256})")
        if problems:
            raise EngineUnavailable(f"blazepose model files: {'; '.join(problems)}; {self.fetch_hint()}",
                                    engine="blazepose", files=[str(self.detector), str(self.landmarks)])
