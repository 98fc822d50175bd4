"""Source kinds and the registry that picks one by URL."""

from __future__ import annotations

import shutil
import subprocess
from urllib.parse import urlsplit

import av

from cdnrec.engine.sources.base import Pull, Source, SourceError

# Shorter stream probing for FLV-based pulls: the frame-rate probe waits for extra video frames
# that copying does not need (av.open on nginx-rtmp: 0.4 s instead of 1.8-2.6 s). Not for
# MPEG-TS-based pulls (HLS, SRT): there it drops the audio frames of the first PES packet.
_PROBE = {"fpsprobesize": "0"}


def _open_av(url: str, options: dict[str, str], fmt: str | None = None) -> Pull:
    try:
        container = av.open(url, "r", format=fmt, container_options=options)
    except (av.FFmpegError, OSError) as e:
        raise SourceError(f"{type(e).__name__}: {e}") from e
    return Pull(container)


def _timeout_us(timeout: float) -> str:
    return str(max(1, int(timeout * 1_000_000)))


class RtmpSource:
    """rtmp:// and rtmps:// pulls (FFmpeg's native RTMP client)."""

    name = "rtmp"

    def handles(self, url: str) -> bool:
        """RTMP URLs."""
        return urlsplit(url).scheme in ("rtmp", "rtmps")

    def open(self, url: str, timeout: float) -> Pull:
        """Open as a live RTMP play."""
        opts = {"rw_timeout": _timeout_us(timeout), "rtmp_live": "live", **_PROBE}
        return _open_av(url, opts)


class HlsSource:
    """HTTP(S) URLs of an .m3u8 live playlist."""

    name = "hls"

    def handles(self, url: str) -> bool:
        """http(s) URLs whose path ends in .m3u8."""
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and parts.path.endswith(".m3u8")

    def open(self, url: str, timeout: float) -> Pull:
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

    def open(self, url: str, timeout: float) -> Pull:
        """Open as an FLV byte stream."""
        opts = {"rw_timeout": _timeout_us(timeout), "reconnect": "0", **_PROBE}
        return _open_av(url, opts, "flv")


class SrtSource:
    """srt:// pulls through an ``ffmpeg`` helper process (PyAV's FFmpeg has no SRT)."""

    name = "srt"

    def handles(self, url: str) -> bool:
        """SRT URLs."""
        return urlsplit(url).scheme == "srt"

    def open(self, url: str, timeout: float) -> Pull:
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
        return Pull(container, release)


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


def open_source(url: str, timeout: float) -> Pull:
    """Open ``url`` with the source kind that handles it."""
    return source_for(url).open(url, timeout)


def probe_live(url: str, timeout: float = 5.0) -> bool:
    """Whether ``url`` is live now: it opens and yields a media packet within ``timeout`` s."""
    try:
        pull = open_source(url, timeout)
    except SourceError:
        return False
    try:
        streams = [s for s in pull.container.streams if s.type in ("video", "audio")]
        if not streams:
            return False
        return any(pkt.size for pkt in pull.container.demux(streams))
    except (av.FFmpegError, OSError):
        return False
    finally:
        pull.close()
