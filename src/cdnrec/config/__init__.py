"""Typed settings: one TOML file with CDNREC_* overrides; unknown keys are errors."""

from cdnrec.config.durations import Duration, format_duration, parse_duration
from cdnrec.config.load import ConfigError, load_settings
from cdnrec.config.model import (
    FORMATS,
    AppSettings,
    CallbackSettings,
    LimitSettings,
    RecorderSettings,
    RetentionSettings,
    S3Settings,
    ServerSettings,
    Settings,
    Vendor,
    VendorSettings,
)

__all__ = [
    "FORMATS",
    "AppSettings",
    "CallbackSettings",
    "ConfigError",
    "Duration",
    "LimitSettings",
    "RecorderSettings",
    "RetentionSettings",
    "S3Settings",
    "ServerSettings",
    "Settings",
    "Vendor",
    "VendorSettings",
    "format_duration",
    "load_settings",
    "parse_duration",
]
