"""The source interface: open a live URL as a pull that yields timed packets."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import av

from cdnrec.engine.formats.base import Inputs

Packet = tuple[Any, int, int, int | None, int, bool]
"""What a pull yields: (packet, kind, dts, pts or None, duration, keyframe), in input ticks."""


class SourceError(Exception):
    """The source could not be opened or read (the recorder retries with backoff)."""


def never() -> bool:
    """A stop check that never asks to stop."""
    return False


def _nothing() -> None:
    return None


class Pull:
    """An open pull: its inputs, then its packets until it ends (``ended`` says why)."""

    inputs: Inputs
    ended: str = ""
    adts_possible: bool = False
    """Whether audio may arrive as ADTS and need converting (MPEG-TS based pulls)."""
    idle: Callable[[], None] = staticmethod(_nothing)
    """Called by pulls that read in batches before they wait: the recorder flushes its files."""
    batched: bool = False
    """Whether ``steps()`` yields pauses between reads (else its reads block, in their thread)."""

    def packets(self) -> Iterator[Packet]:
        """Packets in arrival order; a read failure raises SourceError."""
        raise NotImplementedError

    def steps(self) -> Iterator[Packet | float]:
        """Packets, and for a batched pull the seconds to wait (a float) before each next read."""
        return self.packets()

    def close(self) -> None:
        """Release the connection; never raises."""


class AvPull(Pull):
    """A pull demuxed by PyAV (FFmpeg's protocols and demuxers)."""

    adts_possible = True

    def __init__(self, container: Any, release: Callable[[], None] = _nothing) -> None:
        self.container = container
        self.release = release
        video = next(iter(container.streams.video), None)
        audio = next(iter(container.streams.audio), None)
        self.inputs = Inputs.of(video, audio)

    def packets(self) -> Iterator[Packet]:
        """Demuxed packets of the first video and audio stream."""
        wanted = [s for s in self.inputs.streams if s is not None]
        kind_of = {s.index: k for k, s in enumerate(self.inputs.streams) if s is not None}
        demux = self.container.demux(wanted)
        while True:
            try:
                pkt = next(demux)
            except StopIteration:
                return
            except (av.FFmpegError, OSError) as e:
                raise SourceError(f"{type(e).__name__}: {e}") from e
            dts = pkt.dts
            if dts is not None:
                yield (
                    pkt,
                    kind_of[pkt.stream_index],
                    dts,
                    pkt.pts,
                    pkt.duration or 0,
                    pkt.is_keyframe,
                )

    def close(self) -> None:
        """Close the container and release helpers; never raises."""
        # Closing a broken source must not fail the recording.
        with contextlib.suppress(Exception):
            self.container.close()
        self.release()


class Source(Protocol):
    """A kind of pull URL (RTMP, HTTP-FLV, HLS, SRT)."""

    name: str

    def handles(self, url: str) -> bool:
        """Whether this source kind reads ``url``."""
        ...

    def open(self, url: str, timeout: float, stopping: Callable[[], bool] = never) -> Pull:
        """Open ``url``; no single read blocks longer than ``timeout`` s. Raises SourceError."""
        ...
