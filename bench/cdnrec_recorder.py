#!/usr/bin/env python3
"""cdnrec as a recorder for the shared recording benchmark (``../shared/bench``).

Two uses:

* a library for ``engine_bench.py``: ``CdnrecService`` runs ``cdnrec serve`` as a child process
  with a generated config, a ``Receiver`` takes its ``record`` callbacks in this process, and
  ``PartialIndex`` finds the files still being written under ``<storage root>/.partial``;
* a ``--custom`` command for the unchanged harness::

      bench.py ... --approaches floor,pyav,cdnrec \\
          --custom 'cdnrec=/path/to/.venv/bin/python /path/to/bench/cdnrec_recorder.py --streams {streams} --segment {segment}'

  It starts ``cdnrec serve``, calls StartCDNRecord for every stream of the TSV (at most 100 per
  call), and on SIGINT/SIGTERM calls StopCDNRecord, waits for the last files and their callbacks,
  and stops the service, all within the harness's 15 s grace. Callback arrivals are written as
  JSON lines to ``--callbacks-out`` (default: ``<storage root>/../cdnrec-callbacks.jsonl``).

  Caveat of that mode (why ``engine_bench.py`` exists): the harness polls only the top level of
  each stream's outdir, and cdnrec keeps a file under ``<root>/.partial/`` until it is complete,
  so the harness's "first byte" there is the first *closed* file (one interval later), its
  written-bytes figure moves in whole files, its start time includes the service start, and
  this wrapper's own process (≈ 40 MB RSS, the callback receiver) counts as recorder. Checked
  once (N=1, 4 s files): first byte 6.25 s there vs ≈ 2 s measured by ``engine_bench.py``.

Layout: every stream's outdir must be ``<P>/<stream name>``, with the same parent ``P`` for all
streams. The storage root is ``P`` (``data_dir/files`` is a symlink to it) and the path template is
``{stream_id}/{stream_id}_{begin}_{end}.{ext}``, so each stream's final files land at the top level
of its outdir (an M3U8 playlist's segments in the folder next to it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

APP_ID = 1234567
SECRET = "0123456789abcdef0123456789abcdef"
PATH_TEMPLATE = "{stream_id}/{stream_id}_{begin}_{end}.{ext}"
BATCH = 100  # StreamId[] per Start/Stop call (limits.max_stream_ids)
MEDIA_EXT = (".flv", ".mp4", ".m3u8", ".aac", ".mp3")

CONFIG = """\
# Written by bench/cdnrec_recorder.py for one benchmark run.
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
data_dir = "{data_dir}"

[limits]
media_rps = 1000

[recorder]
capacity = {capacity}
path_template = "{path_template}"

[[apps]]
app_id = {app_id}
server_secret = "{secret}"
callback_url = "{callback_url}"

[apps.vendors.Tencent]
sources = ["{source}"]
formats = {formats}
interval = {interval}
hls_segment = {hls_segment}
retention = 0
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] cdnrec_recorder: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ok(answer: Any) -> bool:
    return isinstance(answer, dict) and answer.get("Code") == 0


# --------------------------------------------------------------------------- callbacks
class Server(ThreadingHTTPServer):
    """The receiver's HTTP server with a production-sized listen backlog.

    http.server's default backlog of 5 made the kernel drop connection attempts when 32 callbacks
    arrived at once (nstat's TcpExtListenOverflows rose), and each dropped SYN came back 1 s or
    3 s later: the delay was the receiver's, not cdnrec's.
    """

    request_queue_size = 1024


class Receiver:
    """A tiny HTTP server taking `record` callbacks; stats each announced file on arrival.

    Per callback it keeps the arrival time (wall clock), the body, and the final file's mtime,
    read at once: the mtime is when the recorder wrote the file's last bytes (trailer), i.e. when
    the file was complete; rename, fsync, store and queueing all come after it.
    """

    def __init__(self, storage_root: Path) -> None:
        self.root = storage_root.resolve()
        self.port = free_port()
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/zego"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a production web server would

            def do_POST(self) -> None:
                arrived = time.time()
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver._record(arrived, raw)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = Server(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="receiver", daemon=True).start()
        return self

    def _record(self, arrived: float, raw: bytes) -> None:
        ev: dict[str, Any] = {"arrived": arrived}
        try:
            body = json.loads(raw)
            ev["stream"] = body.get("stream_alias")
            ev["begin_time"] = int(body.get("begin_time") or 0)
            ev["end_time"] = int(body.get("end_time") or 0)
            parts = urlsplit(body.get("replay_url", "")).path.split("/", 5)
            key = unquote(parts[5]) if len(parts) == 6 and parts[1] == "files" else ""
            ev["key"] = key
            st = (self.root / key).stat() if key else None
            ev["mtime"] = st.st_mtime_ns / 1e9 if st else None
            ev["size"] = st.st_size if st else None
        except (ValueError, OSError) as e:
            ev["error"] = f"{type(e).__name__}: {e}"
        with self._lock:
            self.events.append(ev)

    def count(self) -> int:
        with self._lock:
            return len(self.events)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


# --------------------------------------------------------------------------- partial files
class PartialIndex:
    """Which files under ``<root>/.partial/<recording>/`` belong to which stream.

    A recording's folder is mapped to its stream once, from a sidecar's ``stream_id``; the folder
    list is rescanned at most every ``ttl`` s, the files of one stream's folders on every call.
    """

    def __init__(self, storage_root: Path, ttl: float = 0.05) -> None:
        self.dir = str(storage_root / ".partial")
        self.ttl = ttl
        self.stream_of: dict[str, str] = {}
        self.dirs_of: dict[str, set[str]] = {}
        self._scanned = -1.0

    def _stream(self, rid_dir: str) -> str | None:
        s = self.stream_of.get(rid_dir)
        if s is not None:
            return s
        try:
            for e in os.scandir(os.path.join(self.dir, rid_dir)):
                if e.name.endswith(".json"):
                    with open(e.path) as f:
                        s = str(json.load(f)["stream_id"])
                    self.stream_of[rid_dir] = s
                    self.dirs_of.setdefault(s, set()).add(rid_dir)
                    return s
        except (OSError, ValueError, KeyError):
            pass
        return None

    def refresh(self, force: bool = False) -> None:
        """Learn recording folders created since the last scan."""
        now = time.monotonic()
        if not force and now - self._scanned < self.ttl:
            return
        self._scanned = now
        try:
            for e in os.scandir(self.dir):
                if e.name not in self.stream_of and e.is_dir():
                    self._stream(e.name)
        except FileNotFoundError:
            pass

    def has_files(self, stream: str) -> bool:
        """Whether the stream has a partial file (even an empty one) right now."""
        if stream not in self.dirs_of:
            self.refresh()
        for rid in self.dirs_of.get(stream, ()):
            try:
                if any(
                    not e.name.endswith((".json", ".tmp"))
                    for e in os.scandir(os.path.join(self.dir, rid))
                ):
                    return True
            except FileNotFoundError:
                pass
        return False

    def bytes_of(self, stream: str) -> int:
        """Bytes in the partial files (and partial HLS folders) of one stream, right now."""
        if stream not in self.dirs_of:
            self.refresh()
        return sum(
            tree_bytes(os.path.join(self.dir, rid), skip=(".json", ".tmp"))
            for rid in self.dirs_of.get(stream, ())
        )


def tree_bytes(directory: str, skip: tuple[str, ...] = ()) -> int:
    """Bytes of every file under ``directory`` (recursively), names ending in ``skip`` excluded."""
    total = 0
    try:
        for e in os.scandir(directory):
            try:
                if e.is_dir(follow_symlinks=False):
                    total += tree_bytes(e.path, skip)
                elif not e.name.endswith(skip):
                    total += e.stat().st_size
            except FileNotFoundError:
                pass
    except (FileNotFoundError, NotADirectoryError):
        pass
    return total


def final_files(stream_dir: str) -> list[str]:
    """Final (complete) files of one stream: the top level of its outdir."""
    try:
        return [
            e.path for e in os.scandir(stream_dir) if e.is_file() and e.name.endswith(MEDIA_EXT)
        ]
    except FileNotFoundError:
        return []


# --------------------------------------------------------------------------- the service
class CdnrecService:
    """``cdnrec serve`` as a child process recording streams from one origin into one root."""

    def __init__(
        self,
        *,
        workdir: Path,
        storage_root: Path,
        source: str,
        formats: Iterable[str],
        interval: float,
        hls_segment: float,
        capacity: int,
        callback_url: str,
        python: str = sys.executable,
    ) -> None:
        self.workdir = workdir
        self.root = storage_root.resolve()
        self.python = python
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.formats = list(formats)
        data_dir = workdir / "data"
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        self.root.mkdir(parents=True, exist_ok=True)
        # cdnrec's local storage root is always data_dir/files: point it at the harness's outdir.
        (data_dir / "files").symlink_to(self.root, target_is_directory=True)
        self.config = workdir / "cdnrec.toml"
        self.config.write_text(
            CONFIG.format(
                port=self.port,
                data_dir=data_dir,
                capacity=capacity,
                path_template=PATH_TEMPLATE,
                app_id=APP_ID,
                secret=SECRET,
                callback_url=callback_url,
                source=source,
                formats=json.dumps(self.formats),
                interval=int(interval),
                hls_segment=int(hls_segment),
            )
        )
        self.log_path = workdir / "cdnrec.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._http = httpx.Client(base_url=self.url, timeout=30.0)
        self._api: Any = None
        self.calls: list[dict[str, Any]] = []
        self.start_wall: dict[str, float] = {}  # first stream of a Start call -> wall clock sent

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the child (its output goes to cdnrec.log, truncated)."""
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [self.python, "-m", "cdnrec", "serve", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self.proc

    def wait_healthy(self, timeout: float = 60.0) -> float:
        """Seconds until /healthz answers 200; raises when the child exits or times out."""
        assert self.proc is not None
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"cdnrec serve exited ({self.proc.returncode}); see {self.log_path}"
                )
            try:
                if self._http.get("/healthz", timeout=1.0).status_code == 200:
                    healthy = time.monotonic() - t0
                    self._client()
                    return healthy
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"cdnrec serve not healthy within {timeout} s; see {self.log_path}")

    def _client(self) -> Any:
        """The API client, made once before the first call is timed (a backend keeps its client:
        importing httpx and building a client took ~0.1 s of the first Start's timing)."""
        if self._api is None:
            from cdnrec.client import Client  # imported late: the harness side needs no cdnrec

            self._api = Client(self.url, APP_ID, SECRET)
        return self._api

    def _call(self, action: str, stream_ids: list[str]) -> Any:
        return self._client().call(action, {"StreamId[]": stream_ids, "Vendor": "Tencent"})

    def start_streams(self, stream_ids: list[str]) -> dict[str, float]:
        """StartCDNRecord for every stream (≤100 per call); monotonic time each call was sent."""
        sent: dict[str, float] = {}
        for i in range(0, len(stream_ids), BATCH):
            batch = stream_ids[i : i + BATCH]
            t0 = time.monotonic()
            self.start_wall[batch[0]] = time.time()
            answer = self._call("StartCDNRecord", batch)
            dt = time.monotonic() - t0
            refused = (
                [
                    e.get("StreamName")
                    for e in (answer.get("Data") or {}).get("Tencent", [])
                    if e.get("Code") not in (None, "", "Success", 0)
                ]
                if _ok(answer)
                else batch
            )
            self.calls.append(
                {
                    "action": "StartCDNRecord",
                    "streams": len(batch),
                    "seconds": round(dt, 4),
                    "ok": _ok(answer),
                    "refused": refused,
                }
            )
            if not _ok(answer) or refused:
                raise RuntimeError(f"StartCDNRecord failed: {json.dumps(answer)[:500]}")
            for s in batch:
                sent[s] = t0
        return sent

    def stop_streams(self, stream_ids: list[str]) -> None:
        """StopCDNRecord for every stream (≤100 per call)."""
        for i in range(0, len(stream_ids), BATCH):
            batch = stream_ids[i : i + BATCH]
            t0 = time.monotonic()
            try:
                answer = self._call("StopCDNRecord", batch)
                ok = _ok(answer)
            except httpx.HTTPError as e:
                answer, ok = {"error": str(e)}, False
            self.calls.append(
                {
                    "action": "StopCDNRecord",
                    "streams": len(batch),
                    "seconds": round(time.monotonic() - t0, 4),
                    "ok": ok,
                }
            )
            if not ok:
                log(f"StopCDNRecord failed: {json.dumps(answer)[:300]}")

    def shutdown(self, grace: float) -> bool:
        """SIGINT the child and wait ``grace`` s; SIGKILL after. True when it exited by itself."""
        self._http.close()
        if self._api is not None:
            self._api.close()
        if self.proc is None or self.proc.poll() is not None:
            return True
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=max(0.1, grace))
            return True
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            return False


def partial_count(storage_root: Path) -> int:
    """Files still being written: sidecars under ``<root>/.partial/*/``."""
    n = 0
    try:
        for rid in os.scandir(storage_root / ".partial"):
            if rid.is_dir():
                with contextlib.suppress(FileNotFoundError):
                    n += sum(1 for e in os.scandir(rid.path) if e.name.endswith(".json"))
    except FileNotFoundError:
        pass
    return n


def wait_all_announced(
    receiver: Receiver, storage_root: Path, stream_dirs: list[str], timeout: float
) -> dict[str, Any]:
    """After StopCDNRecord: wait until no file is partial and every final file was announced."""
    t0 = time.monotonic()
    while True:
        partial = partial_count(storage_root)
        finals = sum(len(final_files(d)) for d in stream_dirs)
        announced = receiver.count()
        done = partial == 0 and announced >= finals
        if done or time.monotonic() - t0 > timeout:
            return {
                "seconds": round(time.monotonic() - t0, 3),
                "complete": done,
                "partial_files_left": partial,
                "final_files": finals,
                "callbacks": announced,
            }
        time.sleep(0.05)


# --------------------------------------------------------------------------- --custom command
def read_streams(tsv: str) -> list[tuple[str, str, str]]:
    with open(tsv) as f:
        return [tuple(line.rstrip("\n").split("\t")[:3]) for line in f if line.strip()]  # type: ignore[misc]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--streams", required=True, help="TSV: name<TAB>rtmp-url<TAB>outdir per line")
    ap.add_argument("--segment", type=float, default=10.0, help="cdnrec interval, s")
    ap.add_argument("--formats", default="flv", help="comma list (flv, mp4, m3u8, aac, mp3)")
    ap.add_argument("--hls-segment", type=float, default=10.0)
    ap.add_argument("--callbacks-out", help="JSON lines of callback arrivals")
    ap.add_argument("--grace", type=float, default=14.0, help="s from SIGINT to exit")
    a = ap.parse_args()

    rows = read_streams(a.streams)
    parents = {str(Path(d).resolve().parent) for _, _, d in rows}
    if len(parents) != 1 or any(Path(d).name != n for n, _, d in rows):
        raise SystemExit("cdnrec_recorder: every outdir must be <same parent>/<stream name>")
    root = Path(parents.pop())
    urls = {u.rsplit("/", 1)[0] for _, u, _ in rows}
    if len(urls) != 1 or any(u.rsplit("/", 1)[1] != n for n, u, _ in rows):
        raise SystemExit("cdnrec_recorder: every url must be <same prefix>/<stream name>")
    source = urls.pop() + "/{stream_id}"
    work = root.parent / f"{root.name}-cdnrec"
    work.mkdir(parents=True, exist_ok=True)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    receiver = Receiver(root).start()
    svc = CdnrecService(
        workdir=work,
        storage_root=root,
        source=source,
        formats=a.formats.split(","),
        interval=a.segment,
        hls_segment=a.hls_segment,
        capacity=max(200, len(rows)),
        callback_url=receiver.url,
    )
    svc.spawn()
    names = [n for n, _, _ in rows]
    t_stop = time.monotonic()
    try:
        log(f"service healthy after {svc.wait_healthy():.2f} s; starting {len(names)} streams")
        svc.start_streams(names)
        stop.wait()
        t_stop = time.monotonic()
        svc.stop_streams(names)
        waited = wait_all_announced(
            receiver,
            root,
            [d for _, _, d in rows],
            timeout=max(1.0, a.grace - 3.0 - (time.monotonic() - t_stop)),
        )
        log(f"after stop: {waited}")
    finally:
        clean = svc.shutdown(
            grace=max(1.0, a.grace - (time.monotonic() - t_stop)) if stop.is_set() else 5.0
        )
        receiver.stop()
        out = (
            Path(a.callbacks_out)
            if a.callbacks_out
            else root.parent / f"{root.name}-callbacks.jsonl"
        )
        with out.open("w") as f:
            for ev in receiver.snapshot():
                f.write(json.dumps(ev) + "\n")
        log(f"service {'exited' if clean else 'was killed'}; {receiver.count()} callbacks -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
