"""Real live origins for tests: nginx-rtmp, ffmpeg publishers and listen mode, HLS, HTTP-FLV."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.media import ffmpeg_exe

NGINX_MODULE_DIRS = ("/usr/lib/nginx/modules", "/usr/share/nginx/modules")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts connections on ``port``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


class Proc:
    """A child process stopped by its own PID (TERM, then KILL after a grace period)."""

    def __init__(self, argv: list[str], log: Path | None = None) -> None:
        self.argv = argv
        self.log = log
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        if log:
            out.close()  # type: ignore[union-attr]

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.p.poll() is None

    def stop(self, grace: float = 3.0) -> None:
        """Stop the process and wait for it."""
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(grace)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    def kill(self) -> None:
        """SIGKILL the process."""
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def publish(clip: Path, url: str, *, loop: bool = True, extra: tuple[str, ...] = ()) -> Proc:
    """Publish ``clip`` in real time to ``url`` (FLV over RTMP unless ``extra`` says otherwise)."""
    argv = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-re"]
    if loop:
        argv += ["-stream_loop", "-1"]
    argv += ["-i", str(clip), "-c", "copy", *(extra or ("-f", "flv")), url]
    return Proc(argv)


def listen_flv(clip: Path, url: str) -> Proc:
    """ffmpeg in listen mode serving ``clip`` live to one client at ``url`` (rtmp:// or http://)."""
    return publish(clip, url, extra=("-f", "flv", "-listen", "1"))


def nginx_missing() -> str | None:
    """Why nginx-rtmp cannot run here, or None."""
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        return "nginx is not installed (Debian: apt-get install nginx libnginx-mod-rtmp)"
    if nginx_module() is None:
        return "the nginx RTMP module is missing (Debian: apt-get install libnginx-mod-rtmp)"
    return None


def nginx_module() -> str | None:
    """Path of ngx_rtmp_module.so, if installed."""
    for d in NGINX_MODULE_DIRS:
        p = os.path.join(d, "ngx_rtmp_module.so")
        if os.path.exists(p):
            return p
    return None


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
{user}
pid {work}/nginx.pid;
error_log {work}/error.log warn;
load_module {module};
events {{ worker_connections 256; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        chunk_size 4096;
        application live {{ live on; }}
    }}
}}
"""


class NginxRtmp:
    """An nginx-rtmp origin on a free port; publish to and pull from ``url(name)``."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = free_port()
        work.mkdir(parents=True, exist_ok=True)
        conf = work / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                user="user root;" if os.geteuid() == 0 else "",
                work=work,
                module=nginx_module(),
                port=self.port,
            )
        )
        exe = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = Proc([exe, "-p", f"{work}/", "-c", str(conf), "-e", str(work / "error.log")])
        wait_port(self.port)

    def url(self, name: str) -> str:
        """RTMP URL of stream ``name``."""
        return f"rtmp://127.0.0.1:{self.port}/live/{name}"

    def stop(self) -> None:
        """Stop nginx."""
        self.proc.stop()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class HlsOrigin:
    """ffmpeg writing a live HLS playlist into a folder served over HTTP."""

    def __init__(self, clip: Path, work: Path, segment: float = 1.0) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        handler = functools.partial(_Quiet, directory=str(work))
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.http.server_address[1]
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()
        self.clip, self.segment = clip, segment
        self.proc: Proc | None = None
        self.start()

    def start(self) -> None:
        """Start (or restart) the HLS writer."""
        self.proc = publish(
            self.clip,
            str(self.work / "live.m3u8"),
            extra=(
                "-f",
                "hls",
                "-hls_time",
                str(self.segment),
                "-hls_list_size",
                "6",
                "-hls_flags",
                "delete_segments+omit_endlist",
            ),
        )

    @property
    def url(self) -> str:
        """URL of the live playlist."""
        return f"http://127.0.0.1:{self.port}/live.m3u8"

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until the playlist lists a few segments."""
        end = time.monotonic() + timeout
        pl = self.work / "live.m3u8"
        while time.monotonic() < end:
            if pl.exists() and pl.read_text().count("#EXTINF") >= 2:
                return
            time.sleep(0.1)
        raise TimeoutError("HLS origin did not produce a playlist")

    def stop(self) -> None:
        """Stop the writer and the HTTP server."""
        if self.proc:
            self.proc.stop()
        self.http.shutdown()
        self.http.server_close()
