"""What a client may choose per video (query parameters or form fields of an upload)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from .errors import InvalidOption
from .results.smoothing_options import PRESETS, SmoothingOptions

#: The frame rate a video may be sampled at (frames per second, above 0), and the longest side
#: of the frames an engine may see (pixels): the job options and the decoder check them here.
MAX_FPS = 1000.0
MIN_SIDE, MAX_SIDE = 16, 16384

#: The result files a job writes unless it asks for others.
FORMATS: tuple[Literal["json", "npz"], ...] = ("json", "npz")


#: What ``include=`` may name: ``vertices`` (SMPL mesh per person, in the NPZ), ``json_vertices``
#: (in the JSON too; implies ``vertices``).
Include = Literal["vertices", "json_vertices"]


class JobOptions(BaseModel):
    """What a client may choose per video. Unset fields take the service's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: str | None = None
    fps: float | None = Field(default=None, gt=0, le=MAX_FPS)
    max_side: int | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE)
    start_s: float | None = Field(default=None, ge=0)
    end_s: float | None = Field(default=None, gt=0)
    #: Result files; ``mp4`` is the video with the result drawn on it (the aggregation stage
    #: renders it once the JSON result is written: docs/api.md).
    formats: tuple[Literal["json", "npz", "mp4", "bvh"], ...] = FORMATS
    #: Temporal smoothing (None: off, the default): docs/result-schema.md, "Temporal smoothing".
    #: Every parameter that runs, whatever the client wrote (a preset name, or an object
    #: overriding one), so that a preset retuned later does not change a job's result.
    smooth: SmoothingOptions | None = None
    #: Optional outputs: ``vertices`` (engines with SMPL only).
    include: tuple[Include, ...] = ()

    @field_validator("formats", "include", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return tuple(v.strip() for v in value.split(",") if v.strip()) if isinstance(value, str) else value

    @field_validator("include")
    @classmethod
    def _implied(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        repeated = sorted({f for f in value if value.count(f) > 1})
        if repeated:
            raise PydanticCustomError("include_repeated", "names {names} more than once",
                                      {"names": ", ".join(repeated)})
        if "json_vertices" in value and "vertices" not in value:  # the JSON's vertices are the vertices
            value = ("vertices", *value)
        return value

    @field_validator("smooth", mode="before")
    @classmethod
    def _smoothing(cls, value: Any) -> Any:
        # A preset name, or an object (JSON text in a query string or form field): parsed by
        # SmoothingOptions.parse, which names the field at fault.
        if value is None or isinstance(value, SmoothingOptions):
            return value if value is None or value.enabled else None
        if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise PydanticCustomError("smooth_json", "is not a valid JSON object: {error}",
                                          {"error": str(exc)}) from None
        try:
            parsed = SmoothingOptions.parse(value)
        except InvalidOption as exc:  # names the field: smooth.pixels.beta, ...
            message = exc.message.removeprefix("smooth: ")
            raise PydanticCustomError("smooth_invalid", "{message}", {"message": message}) from None
        return parsed if parsed.enabled else None

    def smoothing(self) -> SmoothingOptions:
        """The smoothing to apply (``PRESETS["off"]`` when none)."""
        return PRESETS["off"] if self.smooth is None else self.smooth

    @property
    def vertices(self) -> bool:
        return "vertices" in self.include

    def require_smpl(self, engine: str, provides_smpl: bool) -> None:
        """Refuse what only a result with SMPL can give (``formats=bvh``, ``include=vertices``)
        when ``engine`` gives none (blazepose, motion): at submission, not as a failed job."""
        if provides_smpl:
            return
        if "bvh" in self.formats:
            raise InvalidOption(f"format bvh needs an engine with SMPL (phalp); engine {engine!r} gives none. Its "
                                "joints export as json or npz (docs/result-schema.md, Joint-only results)",
                                option="formats")
        if self.vertices:
            raise InvalidOption(f"include=vertices needs an engine with a body model (phalp); engine {engine!r} "
                                "has none", option="include")

    @field_validator("formats")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # An empty list would make a job whose result nobody can download; a repeated name is a
        # client's mistake that would otherwise pass unnoticed.
        if not value:
            raise PydanticCustomError("formats_empty", "must name at least one format (comma-separated)")
        repeated = sorted({f for f in value if value.count(f) > 1})
        if repeated:
            raise PydanticCustomError("formats_repeated", "names {names} more than once",
                                      {"names": ", ".join(repeated)})
        return value

    @field_validator("fps", "start_s", "end_s", mode="before")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        # pydantic reads "nan" and "inf" as floats, which then fail a bound with a misleading
        # message ("less than or equal to 1000") or pass one (inf >= 0) and break later.
        if isinstance(value, (str, float)):
            try:
                number = float(value)
            except ValueError:
                return value  # pydantic says that it is not a number
            if math.isnan(number):
                raise PydanticCustomError("not_a_number", "is not a number")
            if math.isinf(number):
                raise PydanticCustomError("not_finite", "must be a finite number")
        return value

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> JobOptions:
        """Validate client-supplied values; raise ``InvalidOption`` naming each bad field."""
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
            fields = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
            raise InvalidOption(f"invalid options: {problems}", fields=fields) from None
