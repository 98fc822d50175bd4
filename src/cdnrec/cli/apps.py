"""`cdnrec apps`: add, list, show, set and remove apps and their vendor configurations."""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from cdnrec.cli.common import CONFIG, settings_from, with_store
from cdnrec.config import Vendor, VendorSettings
from cdnrec.store import App, Store


def redact(secret: str | None) -> str | None:
    """Show only the first four characters of a secret."""
    if not secret:
        return secret
    return secret[:4] + "…" + "*" * 8


def describe(app: App) -> dict[str, Any]:
    """An app as JSON, with secrets redacted."""
    return {
        "app_id": app.app_id,
        "server_secret": redact(app.server_secret),
        "callback_url": app.callback_url,
        "callback_secret": redact(app.callback_secret),
        "enabled": app.enabled,
        "managed_by": "config file" if app.source == "config" else "store",
        "vendors": {v.value: c.model_dump(mode="json") for v, c in app.vendors.items()},
    }


def _now_ms() -> int:
    return int(time.time() * 1000)


@click.group()
def apps() -> None:
    """Manage apps (secrets are shown once, then redacted)."""


@apps.command("add")
@CONFIG
@click.argument("app_id", type=click.IntRange(1, 2**32 - 1), required=False)
@click.option("--secret", help="Server secret (generated when omitted).")
@click.option("--callback-url", help="Where record/compose callbacks are POSTed.")
@click.option(
    "--callback-secret", help="Secret that signs callbacks (defaults to the server secret)."
)
def add(
    config_path: Path | None,
    app_id: int | None,
    secret: str | None,
    callback_url: str | None,
    callback_secret: str | None,
) -> None:
    """Add an app; prints its secret once."""
    settings = settings_from(config_path)
    app_id = app_id or secrets.randbelow(2**31) + 1
    secret = secret or secrets.token_hex(16)
    app = App(app_id, secret, callback_url, callback_secret)

    async def work(store: Store) -> None:
        if await store.apps.get(app_id) is not None:
            raise click.ClickException(f"app {app_id} exists already; use `cdnrec apps set`")
        await store.apps.put(app, _now_ms())

    with_store(settings, work)
    click.echo(f"app_id        {app_id}")
    click.echo(f"server_secret {secret}   (shown once; store it now)")


@apps.command("list")
@CONFIG
def list_apps(config_path: Path | None) -> None:
    """List apps."""
    settings = settings_from(config_path)
    found = with_store(settings, lambda store: store.apps.list())
    if not found:
        click.echo("no apps")
    for app in found:
        vendors = ",".join(v.value for v in app.vendors) or "-"
        state = "enabled" if app.enabled else "disabled"
        click.echo(f"{app.app_id:>10}  {state:8}  vendors={vendors}  {redact(app.server_secret)}")


@apps.command("show")
@CONFIG
@click.argument("app_id", type=int)
def show(config_path: Path | None, app_id: int) -> None:
    """Show one app as JSON (secrets redacted)."""
    settings = settings_from(config_path)
    app = with_store(settings, lambda store: store.apps.get(app_id))
    if app is None:
        raise click.ClickException(f"no app {app_id}")
    click.echo(json.dumps(describe(app), indent=2))


@apps.command("remove")
@CONFIG
@click.argument("app_id", type=int)
def remove(config_path: Path | None, app_id: int) -> None:
    """Remove an app."""
    settings = settings_from(config_path)
    if not with_store(settings, lambda store: store.apps.remove(app_id)):
        raise click.ClickException(f"no app {app_id}")
    click.echo(f"removed app {app_id}")


@apps.command("set")
@CONFIG
@click.argument("app_id", type=int)
@click.option("--callback-url")
@click.option("--callback-secret")
@click.option("--enabled/--disabled", default=None, help="Switch recording on or off.")
@click.option("--rotate-secret", is_flag=True, help="Generate a new server secret (shown once).")
@click.option("--vendor", type=click.Choice([v.value for v in Vendor]), help="Vendor to configure.")
@click.option("--source", "sources", multiple=True, help="Pull URL template with {stream_id}.")
@click.option("--format", "formats", multiple=True, help="m3u8, flv, mp4, aac, mp3.")
@click.option("--interval", help="File length, e.g. 30m.")
@click.option("--hls-segment", help="M3U8 segment length, e.g. 10s.")
@click.option("--retention", help="Storage duration, e.g. 30d (0 keeps forever).")
@click.option("--resume-window", help="How long an interrupted stream may stay away, e.g. 30s.")
@click.option("--remove-vendor", type=click.Choice([v.value for v in Vendor]))
def set_app(config_path: Path | None, app_id: int, **changes: Any) -> None:
    """Change an app or one of its vendor configurations."""
    settings = settings_from(config_path)
    new_secret = secrets.token_hex(16) if changes.pop("rotate_secret") else None

    async def work(store: Store) -> App:
        app = await store.apps.get(app_id)
        if app is None:
            raise click.ClickException(f"no app {app_id}")
        app = _changed(app, changes, new_secret)
        await store.apps.put(app, _now_ms())
        return app

    app = with_store(settings, work)
    if app.source == "config":
        click.echo("note: this app is declared in the config file, which wins at the next start")
    if new_secret:
        click.echo(f"server_secret {new_secret}   (shown once; store it now)")
    click.echo(json.dumps(describe(app), indent=2))


def _changed(app: App, changes: dict[str, Any], new_secret: str | None) -> App:
    vendors = dict(app.vendors)
    if changes.get("remove_vendor"):
        vendors.pop(Vendor(changes["remove_vendor"]), None)
    if changes.get("vendor"):
        vendor = Vendor(changes["vendor"])
        base = vendors.get(vendor, VendorSettings()).model_dump()
        updates = {
            k: v
            for k, v in {
                "sources": changes["sources"] or None,
                "formats": changes["formats"] or None,
                "interval": changes["interval"],
                "hls_segment": changes["hls_segment"],
                "retention": changes["retention"],
                "resume_window": changes["resume_window"],
            }.items()
            if v is not None
        }
        try:
            vendors[vendor] = VendorSettings.model_validate({**base, **updates})
        except ValidationError as exc:
            raise click.ClickException(str(exc)) from exc
    fields: dict[str, Any] = {"vendors": vendors}
    for name in ("callback_url", "callback_secret"):
        if changes.get(name) is not None:
            fields[name] = changes[name] or None
    if changes.get("enabled") is not None:
        fields["enabled"] = changes["enabled"]
    if new_secret:
        fields["server_secret"] = new_secret
    return dataclasses.replace(app, **fields)
