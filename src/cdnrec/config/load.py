"""Reading settings: one TOML file, then CDNREC_* environment overrides."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cdnrec.config.model import Settings

ENV_PREFIX = "CDNREC_"


class ConfigError(Exception):
    """The configuration is unreadable or invalid; the message says where and why."""


def load_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from a TOML file (optional) and the environment."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    apply_env(data, os.environ if environ is None else environ)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, path)) from exc
    if path is not None and not settings.server.data_dir.is_absolute():
        data_dir = (path.parent / settings.server.data_dir).resolve()
        server = settings.server.model_copy(update={"data_dir": data_dir})
        settings = settings.model_copy(update={"server": server})
    return settings


def apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Overlay CDNREC_SECTION__KEY=value variables onto the parsed file."""
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if section == "apps":
            continue
        target = data.setdefault(section, {})
        if isinstance(target, dict):
            target[key] = _env_value(raw)


def _env_value(raw: str) -> Any:
    stripped = raw.strip()
    if stripped[:1] in "[{":
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return raw
    return raw


def _explain(exc: ValidationError, path: Path | None) -> str:
    where = str(path) if path else "environment"
    lines = [f"{where}: invalid configuration"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"  {loc}: unknown key")
        else:
            lines.append(f"  {loc}: {err['msg']}")
    return "\n".join(lines)
