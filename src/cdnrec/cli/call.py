"""`cdnrec call ACTION k=v …`: a signed request, answered readably."""

from __future__ import annotations

import json
from pathlib import Path

import click
import httpx

from cdnrec.cli.common import settings_from
from cdnrec.client import Client


@click.command()
@click.argument("action")
@click.argument("params", nargs=-1)
@click.option(
    "--url", envvar="CDNREC_URL", help="API base URL (env CDNREC_URL; default from config)."
)
@click.option("--app-id", type=int, envvar="CDNREC_APP_ID", help="AppId (env CDNREC_APP_ID).")
@click.option("--secret", envvar="CDNREC_SECRET", help="ServerSecret (env CDNREC_SECRET).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="CDNREC_CONFIG",
    help="Take url, AppId and secret from this config.",
)
@click.option("--post", is_flag=True, help="Send business parameters as a JSON body.")
def call(
    action: str,
    params: tuple[str, ...],
    url: str | None,
    app_id: int | None,
    secret: str | None,
    config_path: Path | None,
    post: bool,
) -> None:
    """Call ACTION with NAME=VALUE parameters, e.g. StreamId[]=s1 Vendor=Tencent."""
    if config_path is not None and (url is None or app_id is None or secret is None):
        settings = settings_from(config_path)
        url = url or settings.server.public_url
        if settings.apps and (app_id is None or secret is None):
            first = settings.apps[0]
            app_id = app_id or first.app_id
            secret = secret or first.secret()
    if url is None or app_id is None or secret is None:
        raise click.UsageError("give --url, --app-id and --secret (or --config, or CDNREC_* env)")
    pairs = []
    for item in params:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.UsageError(f"parameter {item!r} is not NAME=VALUE")
        pairs.append((name, value))
    try:
        with Client(url, app_id, secret) as client:
            answer = client.call(action, pairs, post=post)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}") from exc
    click.echo(json.dumps(answer, indent=2, ensure_ascii=False))
    if answer.get("Code") != 0:
        raise SystemExit(1)
