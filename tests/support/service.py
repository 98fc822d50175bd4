"""A real cdnrec service on a free loopback port, run in its own thread and event loop."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from cdnrec.app import Service, build_service, create_asgi
from cdnrec.client import Client
from cdnrec.config import Settings

SECRET = "0123456789abcdef0123456789abcdef"
APP_ID = 1234567


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_settings(
    data_dir: Path, *, apps: list[dict[str, Any]] | None = None, **sections: Any
) -> Settings:
    """Settings for a test service: one app (APP_ID/SECRET) unless `apps` is given."""
    port = free_port()
    default_app = {
        "app_id": APP_ID,
        "server_secret": SECRET,
        "vendors": {
            "Tencent": {"sources": ["rtmp://127.0.0.1:1/live/{stream_id}"], "formats": ["mp4"]},
            "Ws": {"sources": ["rtmp://127.0.0.1:1/live/{stream_id}"], "formats": ["mp4", "flv"]},
            "Huawei": {"sources": ["rtmp://127.0.0.1:1/live/{stream_id}"], "formats": ["mp4"]},
        },
    }
    server = {
        "listen": f"127.0.0.1:{port}",
        "public_url": f"http://127.0.0.1:{port}",
        "data_dir": str(data_dir),
    }
    server.update(sections.pop("server", {}))
    return Settings.model_validate(
        {"server": server, "apps": apps if apps is not None else [default_app], **sections}
    )


class RunningService:
    """cdnrec served by uvicorn in a background thread; `stop()` shuts it down like SIGTERM."""

    def __init__(self, settings: Settings, **build: Any) -> None:
        self.settings = settings
        self._build = build
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._server: uvicorn.Server | None = None
        self.service: Service | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name="cdnrec-test-service", daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the API."""
        return f"http://{self.settings.server.listen}"

    def client(self, app_id: int = APP_ID, secret: str = SECRET) -> Client:
        """A signed client for this service."""
        return Client(self.url, app_id, secret)

    def start(self) -> RunningService:
        """Start and wait until the port accepts requests."""
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("service did not start")
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # handed to the test thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.service = await build_service(self.settings, **self._build)
        config = uvicorn.Config(
            create_asgi(self.service),
            host=self.settings.server.host,
            port=self.settings.server.port,
            log_level="warning",
            lifespan="on",
        )
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        task = asyncio.create_task(self._server.serve())
        while not self._server.started and not task.done():  # noqa: ASYNC110 - uvicorn exposes a flag only
            await asyncio.sleep(0.01)
        self._ready.set()
        await task

    def run(self, coro_factory: Callable[[Service], Any], timeout: float = 30) -> Any:
        """Run a coroutine on the service's loop (e.g. to read the store) and return its result."""
        assert self.loop is not None
        assert self.service is not None
        return asyncio.run_coroutine_threadsafe(coro_factory(self.service), self.loop).result(
            timeout
        )

    def stop(self) -> None:
        """Shut down gracefully and wait for the thread."""
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(30)


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
