"""The upstream commits are pinned in four places that must agree: the CI build script, the
GPU image, the ``phalp`` extra and the shared source archives (when present)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
SHARED_UPSTREAM = ROOT.parent / "shared" / "upstream"
NAMES = {"PHALP": "PHALP_COMMIT", "4D-Humans": "HUMANS4D_COMMIT", "detectron2": "DETECTRON2_COMMIT",
         "NMR": "NMR_COMMIT"}


def assignments(text: str, pattern: str) -> dict[str, str]:
    return dict(re.findall(pattern, text, re.MULTILINE))


def build_script_pins() -> dict[str, str]:
    return assignments((ROOT / ".ci/build-upstream").read_text(), r"^([A-Z0-9_]+_COMMIT)=([0-9a-f]{40})$")


def test_build_script_pins_every_upstream_package():
    assert set(build_script_pins()) == set(NAMES.values())


def test_gpu_image_pins_the_same_commits():
    pins = assignments((ROOT / "cluster/docker/gpu.Dockerfile").read_text(), r"^ARG ([A-Z0-9_]+_COMMIT)=(\S+)$")
    assert pins == build_script_pins()


def test_phalp_extra_pins_the_same_commits():
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["phalp"]
    pins = build_script_pins()
    urls = {"phalp": ("brjathu/PHALP", pins["PHALP_COMMIT"]),
            "hmr2": ("shubham-goel/4D-Humans", pins["HUMANS4D_COMMIT"])}
    for name, (repo, commit) in urls.items():
        assert f"{name} @ git+https://github.com/{repo}.git@{commit}" in extra


@pytest.mark.skipif(not SHARED_UPSTREAM.is_dir(), reason="no shared/upstream source archives beside the repository")
def test_shared_archives_are_those_commits():
    pins = build_script_pins()
    for name, key in NAMES.items():
        assert (SHARED_UPSTREAM / f"{name}-{pins[key][:12]}.tar.gz").is_file(), name
