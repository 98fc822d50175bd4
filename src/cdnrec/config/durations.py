"""Durations as written in the config file: integer seconds or "90s", "30m", "2h", "7d"."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(value: object) -> float:
    """Return a duration in seconds from an int, a float or a string such as "30m"."""
    if isinstance(value, bool):
        raise ValueError(
            "a duration is a number of seconds or a string like '90s', '30m', '2h', '7d'"
        )
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if not match:
            raise ValueError(
                f"bad duration {value!r}: use seconds or a number with s, m, h or d, e.g. '30m'"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise ValueError(f"bad duration {value!r}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds in the largest whole unit, the inverse of parse_duration."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[float, BeforeValidator(parse_duration)]
