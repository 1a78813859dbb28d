"""What every engine's options share: a frozen pydantic model whose fields carry their bounds
and their meaning (docs/configuration.md's tables are generated from them), and one way of
turning a bad ``engine.options`` into an ``InvalidOption`` that names the option."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo

from ..errors import InvalidOption


class EngineOptions(BaseModel):
    """Base of each engine's options (``engine.options``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: The engine's name, for messages.
    engine: ClassVar[str] = "engine"

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> Any:
        """The options of ``options``; ``InvalidOption`` naming the first bad one, or every
        unknown name with the known ones."""
        try:
            return cls.model_validate(dict(options))
        except ValidationError as exc:
            problems = exc.errors()
            unknown = sorted(str(e["loc"][0]) for e in problems if e["type"] == "extra_forbidden")
            if unknown:
                raise InvalidOption(f"unknown {cls.engine} engine option(s): {', '.join(unknown)}; known: "
                                    f"{', '.join(sorted(cls.model_fields))}", option="engine.options") from None
            name = ".".join(map(str, problems[0]["loc"]))
            message = problems[0]["msg"].removeprefix("Value error, ")
            raise InvalidOption(f"{cls.engine} engine option {name}: {message}",
                                option=f"engine.options.{name}" if name else "engine.options") from None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def at_most_max_age(value: int, info: ValidationInfo) -> int:
    """``max_predicted``'s check in the CPU engines' options: a coasting track is reported at
    most as long as it lives (``max_age``, a field before it)."""
    if "max_age" in info.data and value > info.data["max_age"]:
        raise ValueError("must be in [0, max_age]")
    return value
