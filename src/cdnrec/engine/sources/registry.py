"""Source kinds and the registry that picks one by URL."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import av

from cdnrec.engine.pump import Runner
from cdnrec.engine.rtmp.session import RtmpError, RtmpPlay
from cdnrec.engine.sources.base import AvPull, Pull, Source, SourceError, never
from cdnrec.engine.sources.flvpull import FlvPull, Unsupported
from cdnrec.engine.sources.httpflv import HttpFlvError, HttpFlvPlay

# Shorter stream probing for FLV-based pulls: the frame-rate probe waits for extra video frames
# that copying does not need (av.open on nginx-rtmp: 0.4 s instead of 1.8-2.6 s). Not for
# MPEG-TS-based pulls (HLS, SRT): there it drops the audio frames of the first PES packet.
_PROBE = {"fpsprobesize": "0"}


Wait = Callable[[float], bool]
"""Sleeps up to the given seconds; True when the recording is stopping."""


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


def _open_av(url: str, options: dict[str, str], fmt: str | None = None) -> Pull:
    try:
        container = av.open(url, "r", format=fmt, container_options=options)
    except (av.FFmpegError, OSError) as e:
        raise SourceError(f"{type(e).__name__}: {e}") from e
    return AvPull(container)


def open_native(url: str, timeout: float, wait: Wait = _sleep, run: Runner | None = None) -> Pull:
    """Pull ``url`` (rtmp:// or http:// FLV) with cdnrec's own client; ``run`` runs the reads
    that wait for its first frames (default: in this thread, sleeping with ``wait``).

    Unsupported when FFmpeg's client should read it instead.
    """
    session: RtmpPlay | HttpFlvPlay = (
        RtmpPlay(url, timeout) if urlsplit(url).scheme == "rtmp" else HttpFlvPlay(url, timeout)
    )
    try:
        session.open(lambda: wait(0))
        return FlvPull(session, timeout, wait, run)
    except (RtmpError, HttpFlvError) as e:
        session.close()
        raise SourceError(str(e)) from e
    except SourceError:
        session.close()
        raise


def _timeout_us(timeout: float) -> str:
    return str(max(1, int(timeout * 1_000_000)))


def _native_kind(url: str) -> bool:
    """Whether cdnrec's own client reads ``url``: plain rtmp://, and http:// that is not HLS."""
    parts = urlsplit(url)
    return parts.scheme == "rtmp" or (parts.scheme == "http" and not parts.path.endswith(".m3u8"))


class RtmpSource:
    """rtmp:// and rtmps:// pulls (FFmpeg's native RTMP client)."""

    name = "rtmp"

    def handles(self, url: str) -> bool:
        """RTMP URLs."""
        return urlsplit(url).scheme in ("rtmp", "rtmps")

    def open(self, url: str, timeout: float, stopping: Callable[[], bool] = never) -> Pull:
        """Open as a live RTMP play with FFmpeg's client."""
        opts = {"rw_timeout": _timeout_us(timeout), "rtmp_live": "live", **_PROBE}
        return _open_av(url, opts)


class HlsSource:
    """HTTP(S) URLs of an .m3u8 live playlist."""

    name = "hls"

    def handles(self, url: str) -> bool:
        """http(s) URLs whose path ends in .m3u8."""
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and parts.path.endswith(".m3u8")

    def open(self, url: str, timeout: float, stopping: Callable[[], bool] = never) -> Pull:
        """Open the playlist; a playlist that stops growing ends the pull after a few reloads."""
        opts = {"rw_timeout": _timeout_us(timeout), "m3u8_hold_counters": "4"}
        return _open_av(url, opts, "hls")


class HttpFlvSource:
    """HTTP(S) FLV pulls (any other http(s) URL)."""

    name = "http-flv"

    def handles(self, url: str) -> bool:
        """http(s) URLs that are not HLS playlists."""
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and not parts.path.endswith(".m3u8")

    def open(self, url: str, timeout: float, stopping: Callable[[], bool] = never) -> Pull:
        """Open as an FLV byte stream."""
        opts = {"rw_timeout": _timeout_us(timeout), "reconnect": "0", **_PROBE}
        return _open_av(url, opts, "flv")


class SrtSource:
    """srt:// pulls through an ``ffmpeg`` helper process (PyAV's FFmpeg has no SRT)."""

    name = "srt"

    def handles(self, url: str) -> bool:
        """SRT URLs."""
        return urlsplit(url).scheme == "srt"

    def open(self, url: str, timeout: float, stopping: Callable[[], bool] = never) -> Pull:
        """Run ``ffmpeg -i URL -c copy -f mpegts pipe:1`` and demux its output."""
        exe = shutil.which("ffmpeg")
        if exe is None:
            raise SourceError("srt:// needs an ffmpeg executable with SRT support on PATH")
        sep = "&" if "?" in url else "?"
        src = f"{url}{sep}timeout={_timeout_us(timeout)}"
        proc = subprocess.Popen(
            [
                exe,
                "-nostdin",
                "-loglevel",
                "error",
                "-i",
                src,
                "-map",
                "0:v?",
                "-map",
                "0:a?",
                "-c",
                "copy",
                "-f",
                "mpegts",
                "pipe:1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

        def release() -> None:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

        try:
            container = av.open(proc.stdout, "r", format="mpegts")
        except (av.FFmpegError, OSError) as e:
            release()
            raise SourceError(f"srt: {type(e).__name__}: {e}") from e
        return AvPull(container, release)


_REGISTRY: list[Source] = [RtmpSource(), HlsSource(), HttpFlvSource(), SrtSource()]


def sources() -> tuple[Source, ...]:
    """Every registered source kind, in matching order."""
    return tuple(_REGISTRY)


def source_for(url: str) -> Source:
    """The source kind that reads ``url``; SourceError when none does."""
    for src in _REGISTRY:
        if src.handles(url):
            return src
    raise SourceError(f"no source handles {urlsplit(url).scheme or 'this'} URLs")


def open_source(
    url: str,
    timeout: float,
    wait: Wait = _sleep,
    *,
    native: bool = True,
    run: Runner | None = None,
) -> Pull:
    """Open ``url`` with the source kind that handles it.

    Plain rtmp:// and http:// FLV URLs go to cdnrec's own client first (``native``, its first
    reads run by ``run``); a stream it cannot parse falls back to FFmpeg's.
    """
    if native and _native_kind(url):
        try:
            return open_native(url, timeout, wait, run)
        except Unsupported:
            pass
    return source_for(url).open(url, timeout, lambda: wait(0))


def probe_live(url: str, timeout: float = 5.0) -> bool:
    """Whether ``url`` is live now: it opens and yields a media packet within ``timeout`` s."""
    try:
        pull = open_source(url, timeout)
    except SourceError:
        return False
    try:
        return any(True for _ in pull.packets())
    except SourceError:
        return False
    finally:
        pull.close()
