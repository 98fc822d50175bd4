"""The `cdnrec` command: serve, apps, call, check-config, migrate, demo."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from cdnrec.cli.apps import apps
from cdnrec.cli.call import call
from cdnrec.cli.common import CONFIG, run_service, settings_from
from cdnrec.cli.demo import demo
from cdnrec.store.database import migrate as migrate_schema
from cdnrec.store.database import open_engine


@click.group()
@click.version_option(package_name="cdnrec")
def main() -> None:
    """cdnrec: a self-hosted live-stream recorder speaking ZEGOCLOUD's CDN-recording API."""


@main.command()
@CONFIG
@click.option("--role", type=click.Choice(["all", "api", "recorder"]), help="Override server.role.")
def serve(config_path: Path | None, role: str | None) -> None:
    """Run the service: API, recorder and callbacks in one process (or one --role)."""
    from cdnrec.server import run

    settings = settings_from(config_path)
    if role:
        server = settings.server.model_copy(update={"role": role})
        settings = settings.model_copy(update={"server": server})
    run_service(run(settings))


@main.command("check-config")
@CONFIG
def check_config(config_path: Path | None) -> None:
    """Validate the config file (unknown keys are errors)."""
    settings = settings_from(config_path)
    for app in settings.apps:
        try:
            app.secret()
        except OSError as exc:
            raise click.ClickException(f"app {app.app_id}: cannot read its secret: {exc}") from exc
        for vendor, cfg in app.vendors.items():
            if not cfg.sources:
                click.echo(f"warning: app {app.app_id} {vendor}: no sources (Start answers Code 5)")
    click.echo(f"ok: {len(settings.apps)} app(s), database {settings.database_url()}")


@main.command()
@CONFIG
def migrate(config_path: Path | None) -> None:
    """Apply database migrations."""
    settings = settings_from(config_path)

    async def go() -> None:
        engine = open_engine(settings.database_url())
        try:
            await migrate_schema(engine)
        finally:
            await engine.dispose()

    asyncio.run(go())
    click.echo("database is at the latest schema")


main.add_command(apps)
main.add_command(call)
main.add_command(demo)
