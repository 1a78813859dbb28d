"""What a client may choose per video (query parameters or form fields of an upload)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import InvalidOption
from .serialize import FORMATS


class JobOptions(BaseModel):
    """What a client may choose per video. Unset fields take the service's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: str | None = None
    fps: float | None = Field(default=None, gt=0, le=1000)
    max_side: int | None = Field(default=None, ge=16, le=16384)
    start_s: float | None = Field(default=None, ge=0)
    end_s: float | None = Field(default=None, gt=0)
    formats: tuple[Literal["json", "npz"], ...] = FORMATS

    @field_validator("formats", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return tuple(v.strip() for v in value.split(",") if v.strip()) if isinstance(value, str) else value

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> JobOptions:
        """Validate client-supplied values; raise ``InvalidOption`` naming each bad field."""
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
            fields = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
            raise InvalidOption(f"invalid options: {problems}", fields=fields) from None
