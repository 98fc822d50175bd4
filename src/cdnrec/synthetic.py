"""A synthetic live stream for the demo: ffmpeg test pattern + tone as live HLS over local HTTP."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def ffmpeg_exe() -> str:
    """The system ffmpeg, or the static one shipped by imageio-ffmpeg."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


class _SourceServer(ThreadingHTTPServer):
    """Serves the demo stream's playlist and segments. A reader that goes away in the middle of
    a segment (a recording that reached its EndTime) is not an error worth a traceback."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class SyntheticSource:
    """Publishes `stream_id` as live HLS (1 s segments) at http://HOST:PORT/{stream_id}.m3u8."""

    def __init__(self, folder: Path, stream_id: str, host: str = "127.0.0.1", port: int = 8090):
        self.folder = folder
        self.stream_id = stream_id
        self.host = host
        self.port = port
        self._ffmpeg: subprocess.Popen[bytes] | None = None
        self._http: ThreadingHTTPServer | None = None

    @property
    def url_template(self) -> str:
        """The source URL template to configure."""
        return f"http://{self.host}:{self.port}/{{stream_id}}.m3u8"

    def start(self) -> None:
        """Start ffmpeg and the HTTP server."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob(f"{self.stream_id}*"):
            old.unlink()
        command = [
            ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
            "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
            "-g", "50", "-keyint_min", "50", "-sc_threshold", "0", "-b:v", "800k",
            "-c:a", "aac", "-b:a", "96k",
            "-f", "hls", "-hls_time", "1", "-hls_list_size", "10",
            "-hls_flags", "delete_segments+omit_endlist",
            str(self.folder / f"{self.stream_id}.m3u8"),
        ]  # fmt: skip
        self._ffmpeg = subprocess.Popen(command)
        handler = functools.partial(_QuietHandler, directory=str(self.folder))
        self._http = _SourceServer((self.host, self.port), handler)
        threading.Thread(target=self._http.serve_forever, name="demo-source", daemon=True).start()

    def stop(self) -> None:
        """Stop ffmpeg and the HTTP server."""
        if self._ffmpeg is not None:
            self._ffmpeg.terminate()
            try:
                self._ffmpeg.wait(5)
            except subprocess.TimeoutExpired:
                self._ffmpeg.kill()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()


class CallbackPrinter:
    """A local callback receiver for the demo: verifies each callback's signature and prints it."""

    def __init__(
        self, secret: str, echo: Callable[[str], None], host: str = "127.0.0.1", port: int = 8091
    ) -> None:
        self.url = f"http://{host}:{port}/zego"
        secret_ = secret

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                from cdnrec.callbacks.signing import callback_signature

                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                good = body.get("signature") == callback_signature(
                    secret_, body.get("timestamp", ""), body.get("nonce", "")
                )
                echo(
                    f"callback {body.get('event')}: stream={body.get('stream_alias')} "
                    f"signature={'ok' if good else 'BAD'} url={body.get('replay_url')}"
                )
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((host, port), Handler)

    def start(self) -> None:
        """Serve in a daemon thread."""
        threading.Thread(
            target=self._server.serve_forever, name="demo-callbacks", daemon=True
        ).start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
