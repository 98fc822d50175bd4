"""The config file: example equals defaults, durations, env overrides, unknown keys."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from cdnrec.config import (
    ConfigError,
    S3Settings,
    Settings,
    Vendor,
    VendorSettings,
    load_settings,
    parse_duration,
)

EXAMPLE = Path(__file__).parents[1] / "config.example.toml"


def _documented_keys(model: type[BaseModel], table: dict[str, object]) -> None:
    missing = set(model.model_fields) - set(table)
    assert not missing, f"{model.__name__} keys missing from config.example.toml: {missing}"


def test_example_documents_every_key_with_its_default() -> None:
    raw = tomllib.loads(EXAMPLE.read_text())
    example = load_settings(EXAMPLE, environ={})
    defaults = Settings()
    for section in ("server", "database", "limits", "recorder", "callbacks", "retention"):
        _documented_keys(type(getattr(defaults, section)), raw[section])
        loaded = getattr(example, section)
        expected = getattr(defaults, section)
        if section == "server":
            loaded = loaded.model_copy(update={"data_dir": expected.data_dir})
        assert loaded == expected, f"[{section}] in config.example.toml differs from the defaults"
    storage = raw["storage"]["archive"]
    _documented_keys(S3Settings, storage | {"secret_access_key_file": None})
    archive = example.storage["archive"]
    assert archive == S3Settings(bucket=archive.bucket, endpoint_url=archive.endpoint_url)
    vendor_table = raw["apps"][0]["vendors"]["Tencent"]
    documented = set(vendor_table) | {"wait_for_stream"}
    assert documented == set(VendorSettings.model_fields)
    vendor = example.apps[0].vendors[Vendor.TENCENT]
    assert vendor.model_copy(update={"sources": ()}) == VendorSettings()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90.0), ("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0), ("7d", 604800.0), ("1.5", 1.5)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 weeks", "-3s", "1x", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_unknown_keys_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\nlisten = "127.0.0.1:1"\nlisen = "x"\n')
    with pytest.raises(ConfigError, match=r"server\.lisen: unknown key"):
        load_settings(path, environ={})


def test_unknown_vendor_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[[apps]]\napp_id = 1\nserver_secret = "0123456789abcdef"\n'
        "[apps.vendors.Tencent]\nintervall = 5\n"
    )
    with pytest.raises(ConfigError, match="intervall: unknown key"):
        load_settings(path, environ={})


def test_env_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\nlisten = "127.0.0.1:1"\n[limits]\nmedia_rps = 5\n')
    env = {"CDNREC_SERVER__LISTEN": "127.0.0.1:9999", "CDNREC_LIMITS__MEDIA_RPS": "7"}
    settings = load_settings(path, environ=env)
    assert settings.server.port == 9999
    assert settings.limits.media_rps == 7


def test_env_typo_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        load_settings(None, environ={"CDNREC_LIMITS__MEDIA_RPZ": "7"})


def test_secret_is_never_defaulted() -> None:
    with pytest.raises(ValueError, match="server_secret"):
        Settings.model_validate({"apps": [{"app_id": 5}]})


def test_secret_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("abcdefabcdefabcdef1234\n")
    settings = Settings.model_validate({"apps": [{"app_id": 5, "server_secret_file": str(secret)}]})
    assert settings.apps[0].secret() == "abcdefabcdefabcdef1234"


def test_relative_data_dir_is_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\ndata_dir = "d"\n')
    assert load_settings(path, environ={}).server.data_dir == tmp_path / "d"


def test_vendor_storage_must_be_declared() -> None:
    with pytest.raises(ValueError, match=r"storage 'vault' is not declared"):
        Settings.model_validate(
            {
                "apps": [
                    {
                        "app_id": 5,
                        "server_secret": "0123456789abcdef",
                        "vendors": {"Tencent": {"storage": "vault"}},
                    }
                ]
            }
        )
