"""Pulls whose packets are FLV tags read by cdnrec itself (native RTMP), polled in batches.

FFmpeg's RTMP client reads every chunk with its own system calls and wakes a thread per frame;
here a recorder thread wakes every ``POLL`` seconds, drains its socket in one call and hands the
tags on. FLV outputs copy the tags as they are; other formats get PyAV packets made from them.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import av

from cdnrec.engine.backlog import next_pause
from cdnrec.engine.flv import amf0
from cdnrec.engine.flv.tags import AUDIO, SCRIPT, VIDEO, Tag, file_header, is_enhanced, tag_bytes
from cdnrec.engine.formats.base import AUDIO as K_AUDIO
from cdnrec.engine.formats.base import VIDEO as K_VIDEO
from cdnrec.engine.formats.base import FlvFeed, Inputs
from cdnrec.engine.pump import Runner, Steps, drive
from cdnrec.engine.sources.base import Packet, Pull, SourceError
from cdnrec.memory import release_free

POLL = 1.0
"""Seconds between two reads of a pull's socket once it records (on a pump, moved to its beat:
0.5 to 1.5 s, ``pump.BEAT``). What arrives meanwhile waits in the kernel, and the writers flush
after every read, so a kill -9 loses at most about this much (plus FFmpeg's ~0.5 s buffer for
the PyAV-muxed formats)."""

POLL_FIRST = 0.05
"""Seconds between reads while a pull opens and until its first video key frame is handed on
(the recording starts there): that key frame reaches the disk at once. Only then does the pull
slow down to ``POLL``, so that a hundred recordings starting together do not all read 20 times a
second for longer than they wait for their first key frame."""

_SETTLE = 1.0  # s after the first frame: kinds not seen by then (and not announced) are absent
_ANNOUNCED_WAIT = 10.0  # s: how long a kind announced by onMetaData may take to show up


class Unsupported(SourceError):
    """The stream uses something this reader does not parse; FFmpeg's client should read it."""


class TagSession(Protocol):
    """A connection that delivers FLV tags without blocking."""

    ended: str
    filled: float
    """The share of the socket's receive buffer that the last ``poll`` found waiting."""

    def poll(self) -> list[Tag]:
        """Tags received since the last call (``ended`` is set once the stream is over)."""
        ...

    def close(self) -> None:
        """Close the connection."""
        ...


def _kind(tag: Tag) -> int:
    return K_VIDEO if tag.type == VIDEO else K_AUDIO


def metadata_of(tag: Tag) -> dict[str, Any] | None:
    """The ``onMetaData`` values of a script tag (also inside ``@setDataFrame``), else None."""
    try:
        values = amf0.decode_all(tag.body)
    except amf0.AmfError:
        return None
    if values and values[0] == "@setDataFrame":
        values = values[1:]
    if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
        return values[1]
    return None


def _frame_ms(stream: Any, meta: dict[str, Any]) -> int:
    """Duration in ms of one frame of ``stream`` (what FFmpeg's FLV demuxer would report)."""
    if stream is None:
        return 0
    if stream.type == "audio":
        cc = stream.codec_context
        size, rate = cc.frame_size or 0, cc.sample_rate or 0
        return round(size * 1000 / rate) if size and rate else 0
    rate = meta.get("framerate") or stream.average_rate or stream.guessed_rate
    return round(1000 / float(rate)) if rate and float(rate) > 0 else 0


class FlvPull(Pull):
    """A live pull of FLV tags; opening reads until the streams are known, like a probe.

    Those first reads (up to a GOP of waiting for the first video frame) are steps run by ``run``:
    a recorder runs them on its pump, so that a hundred pulls opening together are read by the
    pump's few wakes rather than each by its own thread 20 times a second.
    """

    batched = True

    def __init__(
        self,
        session: TagSession,
        timeout: float,
        wait: Callable[[float], bool],
        run: Runner | None = None,
    ) -> None:
        self.session = session
        self.timeout = timeout
        self.wait = wait
        self.buffered: list[Tag] = []
        self.meta: dict[str, Any] = {}
        self.config: list[Tag | None] = [None, None]
        self.first: list[Tag | None] = [None, None]
        if run is None:
            drive(self._resolve(), wait)
        else:
            run(self._resolve())
        self.inputs = self._probe()

    # -- opening -------------------------------------------------------------------------------
    def _resolve(self) -> Steps:
        """Read until every kind of media the stream has is known (or a timeout), pausing
        ``POLL_FIRST`` between reads."""
        last_data = time.monotonic()
        first_media: float | None = None
        while True:
            tags = self.session.poll()
            now = time.monotonic()
            if tags:
                last_data = now
            for tag in tags:
                self._learn(tag)
                if first_media is None and self.first != [None, None]:
                    first_media = now
            if self._known(first_media, now):
                return ""
            if self.session.ended:
                raise SourceError(self.session.ended)
            if now - last_data > self.timeout:
                raise SourceError(f"no media within {self.timeout:g} s")
            if self.wait(0):
                raise SourceError("stopped")
            yield POLL_FIRST

    def _learn(self, tag: Tag) -> None:
        self.buffered.append(tag)
        if tag.type == SCRIPT:
            meta = metadata_of(tag)
            if meta is not None and not self.meta:
                self.meta = meta
            return
        if is_enhanced(tag):
            raise Unsupported("Enhanced RTMP (FourCC) video")
        k = _kind(tag)
        if tag.is_config():
            self.config[k] = tag
        elif tag.is_media() and self.first[k] is None:
            self.first[k] = tag

    def _known(self, first_media: float | None, now: float) -> bool:
        have = [self.first[k] is not None for k in (K_VIDEO, K_AUDIO)]
        if all(have):
            return True
        if first_media is None:
            return False
        # nginx-rtmp announces absent kinds with codec ID 0
        announced = [bool(self.meta.get(key)) for key in ("videocodecid", "audiocodecid")]
        if self.meta and not any(a and not h for a, h in zip(announced, have, strict=True)):
            return True
        return now - first_media > (_ANNOUNCED_WAIT if self.meta else _SETTLE)

    def _probe(self) -> Inputs:
        """PyAV streams describing the pull, from its headers and first frames."""
        kinds = [k for k in (K_VIDEO, K_AUDIO) if self.first[k] is not None]
        data = bytearray(file_header(K_VIDEO in kinds, K_AUDIO in kinds))
        for k in kinds:
            for tag in (self.config[k], self.first[k]):
                if tag is not None:
                    data += tag_bytes(tag.type, 0, tag.body)
        try:
            probe = av.open(io.BytesIO(bytes(data)), "r", format="flv")
        except (av.FFmpegError, OSError) as e:
            raise Unsupported(f"FLV probe failed: {type(e).__name__}: {e}") from e
        with probe:
            video = next(iter(probe.streams.video), None) if K_VIDEO in kinds else None
            audio = next(iter(probe.streams.audio), None) if K_AUDIO in kinds else None
            inputs = Inputs.detached(video, audio)
            self.durations = [_frame_ms(video, self.meta), _frame_ms(audio, self.meta)]
        release_free()  # the probe's decoded frame
        inputs.flv = FlvFeed(self.config, self.meta)
        return inputs

    # -- reading -------------------------------------------------------------------------------
    def packets(self) -> Iterator[Packet]:
        """Media tags as packets, waiting in this thread between reads."""
        for item in self.steps():
            if isinstance(item, float):
                if self.wait(item):
                    time.sleep(POLL_FIRST)
            else:
                yield item

    def steps(self) -> Iterator[Packet | float]:
        """Media tags as packets, and after each read the seconds to wait before the next one
        (the files are flushed first); a changed codec configuration ends the pull."""
        present = [s is not None for s in self.inputs.streams]
        vdur, adur = self.durations
        config = self.config
        pending, self.buffered = self.buffered, []
        last_data = polled = time.monotonic()
        pause = POLL
        keyed = not present[K_VIDEO]  # audio only: the first packet starts the recording
        while True:
            for tag in pending:
                typ = tag.type
                if typ != VIDEO and typ != AUDIO:
                    continue
                k = K_VIDEO if typ == VIDEO else K_AUDIO
                if not present[k]:
                    continue
                if tag.is_media():
                    ts = tag.ts
                    if k == K_VIDEO:
                        key = tag.body[0] >> 4 == 1
                        keyed = keyed or key
                        yield tag, k, ts, ts + tag.cts(), vdur, key
                    else:
                        yield tag, k, ts, ts, adur, True
                elif tag.is_config():
                    old = config[k]
                    if old is not None and old.body != tag.body:
                        self.ended = "the codec configuration changed"
                        return
                    config[k] = tag
            if self.session.ended:
                self.ended = self.session.ended
                return
            self.idle()
            # After a stop the recorder goes on to its next check (every 32 packets, as with
            # FFmpeg pulls), so a stop just after a split does not leave a file of one frame.
            yield pause if keyed else POLL_FIRST
            pending = self.session.poll()
            now = time.monotonic()
            # a buffer that filled up holds the stream back: read again sooner
            pause = next_pause(now - polled, self.session.filled, POLL, POLL_FIRST)
            polled = now
            if pending:
                last_data = now
            elif now - last_data > self.timeout:
                raise SourceError(f"no data for {self.timeout:g} s")

    def close(self) -> None:
        """Close the connection."""
        self.session.close()
