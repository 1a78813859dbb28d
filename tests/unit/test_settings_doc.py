"""docs/configuration.md's settings tables are what the code says (they are generated from
the models by ``python docs/settings_doc.py``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pose_pipeline.config import Settings

_spec = importlib.util.spec_from_file_location("settings_doc",
                                               Path(__file__).parents[2] / "docs" / "settings_doc.py")
assert _spec is not None and _spec.loader is not None
settings_doc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(settings_doc)


def test_the_tables_in_the_docs_are_the_generated_ones():
    text = settings_doc.DOC.read_text()
    assert settings_doc.update(text) == text, f"docs/configuration.md is out of date: run `{settings_doc.COMMAND}`"


def test_every_setting_is_in_the_docs_with_its_default_and_a_meaning():
    text = settings_doc.DOC.read_text()
    for section, field in Settings.model_fields.items():
        assert f"### `{section}`" in text
        for name, info in field.annotation.model_fields.items():  # type: ignore[union-attr]
            assert info.description, f"{section}.{name} has no description"
            assert f"| `{name}` |" in text


def test_a_changed_default_is_seen_as_drift():
    text = settings_doc.DOC.read_text()
    stale = text.replace("| `max_chunk_retries` | int | 2 |", "| `max_chunk_retries` | int | 3 |")
    assert stale != text and settings_doc.update(stale) == text


def test_a_document_without_the_markers_is_refused():
    with pytest.raises(ValueError, match="no block"):
        settings_doc.update("# Configuration\n")
