"""`cdnrec demo`: the service with a demo app and a synthetic live stream, ready to record."""

from __future__ import annotations

import secrets
from pathlib import Path

import click

from cdnrec.cli.common import run_service
from cdnrec.config import load_settings
from cdnrec.synthetic import CallbackPrinter, SyntheticSource

DEMO_APP_ID = 1234567

TEMPLATE = """\
# Demo configuration written by `cdnrec demo`. See config.example.toml for every key.
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
data_dir = "."

[[apps]]
app_id = {app_id}
server_secret = "{secret}"
callback_url = "{callback}"

[apps.vendors.Tencent]
sources = ["{source}"]
formats = ["mp4", "m3u8", "flv"]
interval = "20s"
hls_segment = "4s"
retention = "7d"
"""


@click.command()
@click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("demo-data"),
    show_default=True,
    help="Where the demo keeps everything.",
)
@click.option("--port", default=8080, show_default=True, help="API port.")
@click.option(
    "--source-port",
    default=8090,
    show_default=True,
    help="Synthetic source port (the demo callback receiver takes the next one).",
)
def demo(folder: Path, port: int, source_port: int) -> None:
    """Start cdnrec with a demo app and a live synthetic stream called `demo`."""
    from cdnrec.server import run

    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    source = SyntheticSource(folder / "source", "demo", port=source_port)
    config = folder / "cdnrec.toml"
    secret = load_settings(config).apps[0].secret() if config.exists() else secrets.token_hex(16)
    config.write_text(
        TEMPLATE.format(
            port=port,
            app_id=DEMO_APP_ID,
            secret=secret,
            source=source.url_template,
            callback=f"http://127.0.0.1:{source_port + 1}/zego",
        ),
        encoding="utf-8",
    )
    settings = load_settings(config)
    printer = CallbackPrinter(settings.apps[0].secret(), click.echo, port=source_port + 1)
    printer.start()
    source.start()
    click.echo(f"demo: synthetic live stream at {source.url_template.format(stream_id='demo')}")
    click.echo(f"demo: config {config}; files under {settings.storage_root()}")
    click.echo("demo: in another shell, record it for 2 minutes with:\n")
    click.echo(
        f"  .venv/bin/cdnrec call --config {config} StartCDNRecord "
        f"'StreamId[]=demo' Vendor=Tencent EndTime=$(( $(date +%s) + 120 ))\n"
    )
    try:
        run_service(run(settings))
    finally:
        source.stop()
        printer.stop()
