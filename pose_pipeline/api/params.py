"""Query parameters, read in one style: the endpoints take them as text and turn them into
values here, so that every bad one is refused alike: ``InvalidOption`` naming it, with what it
should be (not the web framework's own validation message)."""

from __future__ import annotations

from ..errors import InvalidOption


def whole_number(value: str | None, option: str, *, default: int, minimum: int, maximum: int | None = None) -> int:
    """A whole number in [``minimum``, ``maximum``] (``default`` when absent or empty)."""
    number = optional_whole_number(value, option, minimum=minimum, maximum=maximum)
    return default if number is None else number


def required_whole_number(value: str | None, option: str, *, minimum: int, maximum: int | None = None) -> int:
    """A whole number in [``minimum``, ``maximum``] that the request must give."""
    number = optional_whole_number(value, option, minimum=minimum, maximum=maximum)
    if number is None:
        raise InvalidOption(f"{option} is required (a whole number)", option=option)
    return number


def optional_whole_number(value: str | None, option: str, *, minimum: int, maximum: int | None = None) -> int | None:
    """A whole number in [``minimum``, ``maximum``], or None when absent or empty."""
    if value is None or value == "":
        return None
    text = value.strip()
    number = int(text) if text.isascii() and text.isdigit() else None
    if number is None or number < minimum or (maximum is not None and number > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        raise InvalidOption(f"{option} must be a whole number {bounds}, not {value[:40]!r}", option=option)
    return number
