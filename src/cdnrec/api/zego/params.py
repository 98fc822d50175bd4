"""Reading a request's parameters: query string for GET, query + JSON body for POST."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from cdnrec.api.zego.codes import ApiError, Code

MAX_BODY = 1 << 20
MAX_VALUES = 2000
MAX_DEPTH = 16


@dataclass(frozen=True)
class Params:
    """All values of a request by name; `Name[]` and repeated `Name` both land under `Name`."""

    values: dict[str, list[str]]

    def first(self, name: str) -> str | None:
        """The first value given for `name`."""
        found = self.values.get(name)
        return found[0] if found else None

    def all(self, name: str) -> list[str]:
        """Every value given for `name`, in order."""
        return self.values.get(name, [])


def _normalise(name: str) -> str:
    return name[:-2] if name.endswith("[]") else name


def collect(pairs: Iterable[tuple[str, str]]) -> Params:
    """Group name/value pairs, keeping their order."""
    values: dict[str, list[str]] = {}
    for count, (name, value) in enumerate(pairs, 1):
        if count > MAX_VALUES:
            raise ApiError(Code.BAD_PARAMETER, f"too many parameters (more than {MAX_VALUES})")
        values.setdefault(_normalise(name), []).append(value)
    return Params(values)


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]], depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise ApiError(
            Code.BODY_UNREADABLE,
            f"request body is nested too deeply (more than {MAX_DEPTH} levels)",
        )
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out, depth + 1)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            if isinstance(inner, dict | list):
                _flatten(f"{prefix}.{index}", inner, out, depth + 1)
            else:
                _flatten(prefix, inner, out, depth + 1)
    elif value is None:
        return
    elif isinstance(value, bool):
        out.append((prefix, "true" if value else "false"))
    else:
        out.append((prefix, str(value)))


async def read_params(request: Request) -> Params:
    """Common parameters from the query; for POST, business parameters from a JSON body too."""
    pairs = list(request.query_params.multi_items())
    if request.method == "POST":
        body = await request.body()
        if len(body) > MAX_BODY:
            raise ApiError(Code.BODY_UNREADABLE, f"request body larger than {MAX_BODY} bytes")
        if body.strip():
            try:
                parsed = json.loads(body)
            except RecursionError as exc:
                raise ApiError(
                    Code.BODY_UNREADABLE, "request body is not JSON we read: nested too deeply"
                ) from exc
            except ValueError as exc:  # bad JSON, bad UTF-8, integers beyond 4300 digits
                raise ApiError(Code.BODY_UNREADABLE, f"request body is not JSON: {exc}") from exc
            if not isinstance(parsed, dict):
                raise ApiError(Code.BODY_UNREADABLE, "request body must be a JSON object")
            flat: list[tuple[str, str]] = []
            _flatten("", parsed, flat)
            pairs.extend(flat)
    return collect(pairs)
