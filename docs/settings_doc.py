"""The settings tables of docs/configuration.md, generated from the models, so that the docs
cannot drift from the code (tests/unit/test_settings_doc.py fails when they do).

    python docs/settings_doc.py            # rewrite the tables in docs/configuration.md
    python docs/settings_doc.py --check    # exit 1 if they are not what the code says

A developers' tool: it lives beside the docs it writes, not in the package.

Each table sits between ``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->``
markers; everything else in the file is written by hand.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from pose_pipeline.config import GiB, MiB, Settings
from pose_pipeline.engines.blazepose.options import BlazePoseOptions
from pose_pipeline.engines.faults import FaultSpec
from pose_pipeline.engines.motion.options import MotionOptions
from pose_pipeline.engines.phalp.options import PhalpOptions

DOC = Path(__file__).resolve().parent / "configuration.md"
COMMAND = "python docs/settings_doc.py"


def settings_reference() -> str:
    """One section per part of ``Settings``: its description and a table of its fields."""
    parts = []
    for name, field in Settings.model_fields.items():
        section = field.annotation
        assert isinstance(section, type) and issubclass(section, BaseModel)
        intro = inspect.cleandoc(section.__doc__ or "")
        parts.append(f"### `{name}`\n\n{intro}\n\n{model_table(section)}")
    return "\n\n".join(parts)


def model_table(model: type[BaseModel]) -> str:
    rows = ["| field | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        meaning = " ".join(filter(None, [field.description, _bounds(field)]))
        rows.append(f"| `{name}` | {_type(field.annotation)} | {_default(name, field)} | {meaning} |")
    return "\n".join(rows)


def _bounds(field: FieldInfo) -> str:
    """The field's numeric bounds as a range, e.g. ``(0, 1]``; empty when it has none."""
    low = high = None
    low_open = high_open = False
    for item in field.metadata:
        for attribute, is_low, is_open in (("ge", True, False), ("gt", True, True), ("le", False, False),
                                           ("lt", False, True)):
            value = getattr(item, attribute, None)
            if value is not None:
                if is_low:
                    low, low_open = value, is_open
                else:
                    high, high_open = value, is_open
    if low is None and high is None:
        return ""
    if high is None:
        return f"(> {low:g})" if low_open else f"(≥ {low:g})"
    if low is None:
        return f"(< {high:g})" if high_open else f"(≤ {high:g})"
    return f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


#: Name -> what goes between its markers.
BLOCKS: Mapping[str, Callable[[], str]] = {
    "settings": settings_reference,
    "phalp-options": lambda: model_table(PhalpOptions),
    "blazepose-options": lambda: model_table(BlazePoseOptions),
    "motion-options": lambda: model_table(MotionOptions),
    "faults": lambda: model_table(FaultSpec),
}


def update(text: str) -> str:
    """``text`` (docs/configuration.md) with every generated block rewritten."""
    for name, render in BLOCKS.items():
        pattern = re.compile(rf"(<!-- generated: {name} [^>]*-->\n)(?:.*?\n)?(<!-- end generated: {name} -->)", re.S)
        found = pattern.search(text)
        if found is None:
            raise ValueError(f"docs/configuration.md has no block for {name!r}")
        text = text[:found.end(1)] + render() + "\n" + text[found.start(2):]
    return text


def _type(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return f"{_type(inner)} or null"
    if origin is tuple:
        return f"list of {_type(args[0])}" if args and args[-1] is Ellipsis else "list"
    if origin is dict:
        return "mapping"
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    return getattr(annotation, "__name__", str(annotation))


def _default(name: str, field: FieldInfo) -> str:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "doc_default" in extra:
        return str(extra["doc_default"])
    if field.is_required():
        return "(required)"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) and name.endswith("_bytes"):
        for unit, size in (("GiB", GiB), ("MiB", MiB)):
            if value >= size and value % size == 0:
                return f"{value} ({value // size} {unit})"
    if isinstance(value, tuple):
        return f"`{', '.join(map(str, value))}`" if value else "`[]`"
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value}`"
    if isinstance(value, str):
        return f"`{value}`"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the docs differ from the code")
    args = parser.parse_args(argv)
    text = DOC.read_text()
    wanted = update(text)
    if args.check:
        if wanted != text:
            print(f"{DOC}: the settings tables differ from the code; run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
