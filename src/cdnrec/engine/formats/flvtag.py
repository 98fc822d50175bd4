"""FLV files written tag by tag from a native pull: the source's tags copied byte for byte.

Only the tag timestamps change (each file starts at 0). Every file begins with an
``onMetaData`` tag (duration and size filled in at close) and the sequence headers of the pull,
so each file plays on its own.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any

from cdnrec.engine.flv.tags import (
    DOUBLE,
    SCRIPT,
    Metadata,
    file_header,
    tag_bytes,
    tag_header,
    tag_trailer,
)
from cdnrec.engine.formats.base import (
    AUDIO,
    VIDEO,
    Inputs,
    Timeline,
    WriterContext,
    WriterError,
)
from cdnrec.engine.formats.pages import PageRelease

if TYPE_CHECKING:
    from fractions import Fraction

    from cdnrec.engine.formats.copy import CopyWriter

_BURST = 8 << 20
"""Bytes buffered before a write even between two reads of the pull. A native pull flushes after
every read (``Writer.flush``), so this only bounds an unusual burst; writing once per read is
what keeps the system calls few (writing 2.1 MB in 20 KB pieces cost about 1.1 ms of system
time here, in 105 KB pieces about 0.6 ms). The tags are kept as parts and written by one
``writev``."""

_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16
"""Parts one ``writev`` call takes (1024 on Linux)."""

_KEEP = (
    "width",
    "height",
    "framerate",
    "videodatarate",
    "videocodecid",
    "audiodatarate",
    "audiosamplerate",
    "audiosamplesize",
    "stereo",
    "audiocodecid",
)


def write_parts(fd: int, parts: list[bytes]) -> None:
    """Write ``parts`` in order with as few ``writev`` calls as the system allows; a short write
    goes on where it stopped. (Appending the tags to one bytearray cost about three times the CPU:
    it grows, and is copied, many times a second.)"""
    at = 0
    while at < len(parts):
        written = os.writev(fd, parts[at : at + _IOV_MAX])
        if not written:  # headers and trailers are never empty: something is wrong
            raise OSError(errno.EIO, "writev wrote nothing")
        while at < len(parts) and written >= len(parts[at]):
            written -= len(parts[at])
            at += 1
        if written:
            parts[at] = parts[at][written:]


def _metadata(inputs: Inputs, kinds: tuple[int, ...]) -> Metadata:
    assert inputs.flv is not None
    source = inputs.flv.meta
    fields: dict[str, Any] = {}
    for key in _KEEP:
        value = source.get(key)
        kind = AUDIO if key.startswith("audio") or key == "stereo" else VIDEO
        if isinstance(value, int | float) and kind in kinds:
            fields[key] = value
    fields["encoder"] = "cdnrec"
    return Metadata(fields)


class TagFile(Timeline):
    """One FLV output file fed with FLV tags; same interface as the PyAV-muxed file."""

    def __init__(
        self, w: CopyWriter, inputs: Inputs, kinds: tuple[int, ...], t: float, bufsize: int
    ) -> None:
        assert inputs.flv is not None
        self.info = w.ctx.open_partial(w.format, w.ctx.wall_ms(t))
        meta = _metadata(inputs, kinds)
        head = file_header(VIDEO in kinds, AUDIO in kinds)
        self.patch = meta.patch_offsets(len(head))
        first = head + tag_bytes(SCRIPT, 0, meta.body)
        for k in kinds:
            config = inputs.flv.config[k]
            if config is not None:
                first += tag_bytes(config.type, 0, config.body)
        self.parts: list[bytes] = [first]
        self.pending = len(first)
        self.limit = _BURST  # not ``bufsize``: flushes follow the pull's reads
        self.size = 0
        try:
            self.fh = open(self.info.path, "wb", buffering=0)  # noqa: SIM115
        except OSError as e:
            raise WriterError(f"{w.format}: cannot open {self.info.path}: {e}") from e
        self.pages = PageRelease(self.fh.fileno())
        super().__init__(w.format, inputs, kinds, t)

    def write(self, pkt: Any, kind: int, dts: int, pts: int, dur: int, tb: Any, nudge: int) -> None:
        """Append a tag with its timestamp relative to this file's start (never negative)."""
        d = dts - self.base[kind]
        last = self.last[kind]
        if d <= last:
            d = last + nudge
        elif d < 0:
            d = 0
        self.last[kind] = d
        self.end[kind] = d + (dur if dur > 0 else d - last)
        body = pkt.body
        n = len(body)
        parts = self.parts
        parts.append(tag_header(pkt.type, d, n))
        parts.append(body)
        parts.append(tag_trailer(n))
        self.pending += n + 15
        if self.pending >= self.limit:
            self.flush()

    def flush(self) -> None:
        """Write out the buffered tags (once per read of the pull: about a second of media)."""
        if not self.parts:
            return
        try:
            write_parts(self.fh.fileno(), self.parts)
        except OSError as e:
            raise WriterError(f"{self.format}: {type(e).__name__}: {e}") from e
        self.size += self.pending
        self.parts = []
        self.pending = 0
        self.pages.grown(self.size)

    def rebase(self, old: list[Fraction], new: list[Fraction]) -> None:
        """Native pulls always count in milliseconds: nothing to convert."""

    def finish(self, ctx: WriterContext, tb: list[Fraction]) -> None:
        """Fill in duration and size, close, move to the final name and announce."""
        duration = self.duration(tb)
        self.flush()
        try:
            fh = self.fh
            size = self.size
            for key, value in (("duration", duration), ("filesize", float(size))):
                fh.seek(self.patch[key])
                fh.write(DOUBLE.pack(value))
            fh.close()
        except OSError as e:
            raise WriterError(f"{self.format}: closing {self.info.path}: {e}") from e
        self.announce(ctx, self.info, duration)
