"""The command line: apps, check-config, migrate and call, against real stores and services."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cdnrec.cli import main
from tests.support.service import APP_ID, SECRET, RunningService, make_settings

CONFIG = """\
[server]
data_dir = "{data_dir}"

[[apps]]
app_id = {app_id}
server_secret = "{secret}"

[apps.vendors.Tencent]
sources = ["rtmp://127.0.0.1:1/live/{{stream_id}}"]
"""
CDNREC = Path(sys.executable).with_name("cdnrec")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config file whose data_dir is tmp_path."""
    path = tmp_path / "cdnrec.toml"
    path.write_text(CONFIG.format(data_dir=tmp_path, app_id=APP_ID, secret=SECRET))
    return path


def cli(*args: str, config: Path | None = None, env: dict[str, str] | None = None) -> Result:
    """Run `cdnrec ARGS` in-process."""
    full_env = {"CDNREC_CONFIG": str(config)} if config else {}
    full_env.update(env or {})
    return CliRunner().invoke(main, list(args), env=full_env, catch_exceptions=False)


def shown_secret(output: str) -> str:
    """The secret printed by `apps add` or `--rotate-secret`."""
    match = re.search(r"server_secret ([0-9a-f]{32})\s+\(shown once", output)
    assert match, output
    return match.group(1)


def show(app_id: int, config: Path) -> dict[str, Any]:
    """`cdnrec apps show` as JSON."""
    result = cli("apps", "show", str(app_id), config=config)
    assert result.exit_code == 0, result.output
    shown: dict[str, Any] = json.loads(result.output)
    return shown


# -- apps ---------------------------------------------------------------------------------


def test_apps_add_shows_the_secret_once_and_redacts_it_afterwards(config: Path) -> None:
    added = cli("apps", "add", "42", "--callback-url", "http://127.0.0.1:9/cb", config=config)
    assert added.exit_code == 0, added.output
    secret = shown_secret(added.output)
    listed = cli("apps", "list", config=config)
    assert listed.exit_code == 0
    line = next(ln for ln in listed.output.splitlines() if ln.split()[0] == "42")
    assert "enabled" in line
    assert secret[:4] + "…" in line
    assert secret not in listed.output
    shown = show(42, config)
    assert secret not in json.dumps(shown)
    assert shown["server_secret"] == secret[:4] + "…********"
    assert shown["callback_url"] == "http://127.0.0.1:9/cb"
    assert shown["managed_by"] == "store"
    assert shown["vendors"] == {}


def test_apps_add_with_a_given_secret_and_without_an_id(config: Path) -> None:
    added = cli("apps", "add", "--secret", "abcdef0123456789abcdef0123456789", config=config)
    assert added.exit_code == 0, added.output
    app_id = int(re.search(r"app_id\s+(\d+)", added.output).group(1))  # type: ignore[union-attr]
    assert 0 < app_id < 2**32
    assert "abcdef0123456789abcdef0123456789" in added.output
    assert show(app_id, config)["server_secret"] == "abcd…********"


def test_apps_add_refuses_an_existing_app(config: Path) -> None:
    assert cli("apps", "add", "42", config=config).exit_code == 0
    again = cli("apps", "add", "42", config=config)
    assert again.exit_code != 0
    assert "app 42 exists already" in again.output


def test_apps_list_says_so_when_there_are_none(config: Path) -> None:
    assert cli("migrate", config=config).exit_code == 0
    listed = cli("apps", "list", config=config)
    assert listed.exit_code == 0
    assert listed.output.strip() == "no apps"


def test_config_file_apps_are_listed_once_the_service_has_started(
    config: Path, tmp_path: Path
) -> None:
    RunningService(make_settings(tmp_path, server={"role": "api"})).start().stop()
    shown = show(APP_ID, config)
    assert shown["managed_by"] == "config file"
    assert SECRET not in json.dumps(shown)


def test_apps_set_changes_vendors_state_and_secret(config: Path) -> None:
    secret = shown_secret(cli("apps", "add", "42", config=config).output)
    changed = cli(
        "apps", "set", "42",
        "--vendor", "Tencent",
        "--source", "rtmp://origin/live/{stream_id}",
        "--source", "http://cdn/live/{stream_id}.flv",
        "--format", "mp4", "--format", "M3U8",
        "--interval", "30m", "--retention", "7d",
        config=config,
    )  # fmt: skip
    assert changed.exit_code == 0, changed.output
    tencent = show(42, config)["vendors"]["Tencent"]
    assert tencent["sources"] == [
        "rtmp://origin/live/{stream_id}",
        "http://cdn/live/{stream_id}.flv",
    ]
    assert tencent["formats"] == ["mp4", "m3u8"]
    assert (tencent["interval"], tencent["retention"]) == (1800.0, 7 * 86400.0)

    assert cli("apps", "set", "42", "--disabled", config=config).exit_code == 0
    assert show(42, config)["enabled"] is False
    assert "disabled" in cli("apps", "list", config=config).output

    rotated = cli("apps", "set", "42", "--rotate-secret", config=config)
    assert rotated.exit_code == 0
    new_secret = shown_secret(rotated.output)
    assert new_secret != secret
    assert rotated.output.count(new_secret) == 1

    removed = cli("apps", "set", "42", "--remove-vendor", "Tencent", config=config)
    assert removed.exit_code == 0
    assert show(42, config)["vendors"] == {}


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["--vendor", "Tencent", "--interval", "3h"], "interval must be between 1 s and 7200 s"),
        (["--vendor", "Tencent", "--source", "rtmp://origin/live/x"], "must contain {stream_id}"),
        (["--vendor", "Tencent", "--format", "wav"], "unknown format"),
        (["--vendor", "Aliyun"], "Invalid value for '--vendor'"),
    ],
)
def test_apps_set_refuses_bad_values(config: Path, args: list[str], why: str) -> None:
    cli("apps", "add", "42", config=config)
    result = cli("apps", "set", "42", *args, config=config)
    assert result.exit_code != 0
    assert why in result.output
    assert show(42, config)["vendors"] == {}


def test_apps_remove(config: Path) -> None:
    cli("apps", "add", "42", config=config)
    removed = cli("apps", "remove", "42", config=config)
    assert removed.exit_code == 0
    assert removed.output.strip() == "removed app 42"
    again = cli("apps", "remove", "42", config=config)
    assert again.exit_code != 0
    assert "no app 42" in again.output
    missing = cli("apps", "show", "42", config=config)
    assert missing.exit_code != 0


# -- check-config, migrate ----------------------------------------------------------------


def test_check_config_accepts_a_valid_file(config: Path) -> None:
    result = cli("check-config", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: 1 app(s), database sqlite:///")


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ("[server]\nlisten_on = '1'\n", "server.listen_on: unknown key"),
        ("[limits]\nmedia_rps = 20\nburst = 3\n", "limits.burst: unknown key"),
        ("[nonsense]\nx = 1\n", "nonsense: unknown key"),
    ],
)
def test_check_config_refuses_unknown_keys(tmp_path: Path, content: str, where: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    result = cli("check-config", "--config", str(path))
    assert result.exit_code != 0
    assert where in result.output


def test_check_config_reports_an_unknown_vendor_key(tmp_path: Path, config: Path) -> None:
    bad = config.read_text() + "formatz = ['mp4']\n"
    path = tmp_path / "bad.toml"
    path.write_text(bad)
    result = cli("check-config", "--config", str(path))
    assert result.exit_code != 0
    assert "apps.0.vendors.Tencent.formatz: unknown key" in result.output


def test_check_config_warns_about_a_vendor_without_sources(tmp_path: Path) -> None:
    path = tmp_path / "nosrc.toml"
    path.write_text(
        f"[server]\ndata_dir = '{tmp_path}'\n[[apps]]\napp_id = 9\nserver_secret = '{SECRET}'\n"
        "[apps.vendors.Ws]\nformats = ['mp4']\n"
    )
    result = cli("check-config", "--config", str(path))
    assert result.exit_code == 0
    assert "warning: app 9 Ws: no sources (Start answers Code 5)" in result.output


def test_migrate_creates_the_schema_and_can_run_again(config: Path, tmp_path: Path) -> None:
    for _ in range(2):
        result = cli("migrate", config=config)
        assert result.exit_code == 0, result.output
        assert result.output.strip() == "database is at the latest schema"
    assert (tmp_path / "cdnrec.db").stat().st_size > 0


# -- call ---------------------------------------------------------------------------------


@pytest.fixture
def running(tmp_path: Path) -> Any:
    """A service on tmp_path (the data_dir the `config` fixture names too)."""
    service = RunningService(make_settings(tmp_path, server={"role": "api"})).start()
    yield service
    service.stop()


def call(running: RunningService, *args: str, app_id: int = APP_ID, secret: str = SECRET) -> Result:
    """`cdnrec call` against the running service."""
    return cli("call", "--url", running.url, "--app-id", str(app_id), "--secret", secret, *args)


def test_call_prints_the_envelope(running: RunningService) -> None:
    result = call(running, "StartCDNRecord", "StreamId[]=s1", "StreamId[]=s2", "Vendor=Tencent")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["Code"] == 0
    assert [e["StreamName"] for e in answer["Data"]["Tencent"]] == ["s1", "s2"]
    assert result.output.startswith("{\n  ")


def test_call_posts_a_json_body(running: RunningService) -> None:
    result = call(running, "--post", "StartCDNRecord", "StreamId[]=p1", "Vendor=Tencent")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["Data"]["Tencent"][0]["StreamName"] == "p1"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["StartCDNRecord", "StreamId[]=s1", "Vendor=Nope"], 4),
        (["StartCDNRecord", "StreamId[]=../x", "Vendor=Tencent"], 2),
        (["NoSuchAction"], 100000007),
    ],
)
def test_call_exits_non_zero_on_a_non_zero_code(
    running: RunningService, args: list[str], code: int
) -> None:
    result = call(running, *args)
    assert result.exit_code == 1
    assert json.loads(result.output)["Code"] == code


def test_call_with_a_wrong_secret_exits_non_zero(running: RunningService) -> None:
    result = call(running, "StopCDNRecord", "StreamId[]=s1", "Vendor=Tencent", secret="f" * 32)
    assert result.exit_code == 1
    assert json.loads(result.output)["Code"] == 100000005


def test_call_takes_url_app_and_secret_from_the_environment(running: RunningService) -> None:
    env = {"CDNREC_URL": running.url, "CDNREC_APP_ID": str(APP_ID), "CDNREC_SECRET": SECRET}
    result = cli("call", "StopCDNRecord", "StreamId[]=s1", "Vendor=Tencent", env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["Data"]["Tencent"][0]["Code"] != ""


def test_call_refuses_a_parameter_without_a_value(running: RunningService) -> None:
    result = call(running, "StartCDNRecord", "Vendor")
    assert result.exit_code == 2
    assert "is not NAME=VALUE" in result.output


def test_call_reports_an_unreachable_service() -> None:
    result = cli("call", "--url", "http://127.0.0.1:1", "--app-id", "1", "--secret", SECRET, "X")
    assert result.exit_code == 1
    assert "cannot reach http://127.0.0.1:1" in result.output


def test_an_app_added_with_the_cli_can_call_the_service(config: Path, tmp_path: Path) -> None:
    secret = shown_secret(cli("apps", "add", "42", config=config).output)
    cli(
        "apps", "set", "42", "--vendor", "Huawei", "--source", "rtmp://x/{stream_id}", config=config
    )
    service = RunningService(make_settings(tmp_path, server={"role": "api"})).start()
    try:
        result = call(
            service, "StopCDNRecord", "StreamId[]=s1", "Vendor=Huawei", app_id=42, secret=secret
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["Data"]["Huawei"][0]["StreamName"] == "s1"
    finally:
        service.stop()


def test_the_installed_command_calls_the_service(running: RunningService) -> None:
    env = {
        **os.environ,
        "CDNREC_URL": running.url,
        "CDNREC_APP_ID": str(APP_ID),
        "CDNREC_SECRET": SECRET,
    }
    done = subprocess.run(
        [str(CDNREC), "call", "StartCDNRecord", "StreamId[]=sub1", "Vendor=Tencent"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["Data"]["Tencent"][0]["StreamName"] == "sub1"
    refused = subprocess.run(
        [str(CDNREC), "call", "StartCDNRecord", "StreamId[]=sub1", "Vendor=Aliyun"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["Code"] == 4
