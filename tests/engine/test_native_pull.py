"""cdnrec's own RTMP and HTTP-FLV pull and FLV tag handling: byte layouts, nginx-rtmp, HTTP."""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import pytest
from tests.engine.conftest import stream_name
from tests.engine.test_formats import wait_live
from tests.support.media import make_clip
from tests.support.origins import NginxRtmp, Proc, free_port, listen_flv, publish

from cdnrec.engine.flv import amf0
from cdnrec.engine.flv.tags import AUDIO, VIDEO, FlvError, FlvReader, Tag, tag_bytes
from cdnrec.engine.formats.flvtag import write_parts
from cdnrec.engine.pump import Job, Pumps, Steps
from cdnrec.engine.rtmp.chunks import ChunkError, ChunkReader, Message, chunk
from cdnrec.engine.rtmp.session import RtmpError, RtmpPlay, Target
from cdnrec.engine.sources import AvPull, SourceError, open_source
from cdnrec.engine.sources.flvpull import POLL, POLL_FIRST, FlvPull, TagSession, metadata_of
from cdnrec.engine.sources.httpflv import HttpFlvError, HttpFlvPlay


def test_amf0_round_trip() -> None:
    """Commands survive encoding and decoding, nested objects and arrays included."""
    values = [
        "connect",
        1.0,
        {"app": "live", "fpad": False, "n": 2.5, "o": {"x": None}},
        [1.0, "a"],
    ]
    assert amf0.decode_all(b"".join(amf0.encode(v) for v in values)) == values
    meta = amf0.encode("onMetaData") + amf0.encode_ecma({"width": 640.0, "stereo": True})
    assert metadata_of(Tag(18, 0, meta)) == {"width": 640.0, "stereo": True}
    with pytest.raises(amf0.AmfError):
        amf0.decode_all(amf0.encode("truncated")[:-2])


def test_chunks_reassemble_every_header_form() -> None:
    """Full, delta and continuation headers, extended timestamps and a chunk size change."""
    big = bytes(range(256)) * 3
    stream = chunk(4, VIDEO, 1, 1000, big, 128)  # fmt 0 then fmt 3 continuations
    # fmt 1 (delta 40, new length/type), fmt 2 (delta 40, same length), fmt 3 (same delta again)
    stream += bytes([0x44]) + (40).to_bytes(3, "big") + (3).to_bytes(3, "big") + bytes([AUDIO])
    stream += b"abc"
    stream += bytes([0x84]) + (40).to_bytes(3, "big") + b"def"
    stream += bytes([0xC4]) + b"ghi"
    stream += chunk(5, AUDIO, 1, 0x01000000, b"x" * 200, 128)  # extended timestamp
    stream += chunk(2, 1, 0, 0, (4096).to_bytes(4, "big"), 128)  # set chunk size
    stream += chunk(6, VIDEO, 1, 5, big, 4096)
    reader = ChunkReader()
    got = []
    for i in range(0, len(stream), 7):  # arbitrary TCP segmentation
        got += reader.feed(stream[i : i + 7])
    assert [(m.type, m.ts, m.body) for m in got] == [
        (VIDEO, 1000, big),
        (AUDIO, 1040, b"abc"),
        (AUDIO, 1080, b"def"),
        (AUDIO, 1120, b"ghi"),
        (AUDIO, 0x01000000, b"x" * 200),
        (1, 0, (4096).to_bytes(4, "big")),
        (VIDEO, 5, big),
    ]
    assert reader.chunk_size == 4096
    with pytest.raises(ChunkError):
        ChunkReader().feed(bytes([0x47]) + bytes(7))  # a delta header on an unknown stream


def test_tag_fields() -> None:
    """Sequence headers, frames, key frames and composition times are read from the body."""
    config = Tag(VIDEO, 0, bytes([0x17, 0, 0, 0, 0, 1, 2]))
    key = Tag(VIDEO, 40, bytes([0x17, 1, 0xFF, 0xFF, 0xD8, 9, 9]))  # cts -40
    inter = Tag(VIDEO, 80, bytes([0x27, 1, 0, 0, 80, 9]))
    aac_config = Tag(AUDIO, 0, bytes([0xAF, 0, 0x12, 0x10]))
    aac = Tag(AUDIO, 10, bytes([0xAF, 1, 7, 7]))
    assert config.is_config()
    assert not config.is_media()
    assert key.is_media()
    assert key.is_keyframe()
    assert key.cts() == -40
    assert inter.is_media()
    assert not inter.is_keyframe()
    assert inter.cts() == 80
    assert aac_config.is_config()
    assert aac.is_media()
    assert aac.payload_offset() == 2
    assert tag_bytes(VIDEO, 0x01020304, b"ab") == (
        bytes([VIDEO, 0, 0, 2, 0x02, 0x03, 0x04, 0x01, 0, 0, 0]) + b"ab" + (13).to_bytes(4, "big")
    )


def test_target_parsing() -> None:
    """Application, play path (query kept for token auth) and tcUrl come from the URL."""
    t = Target("rtmp://origin.example:1936/live/room1?txSecret=a&txTime=b")
    assert (t.host, t.port, t.app) == ("origin.example", 1936, "live")
    assert t.play_path == "room1?txSecret=a&txTime=b"
    assert t.tc_url == "rtmp://origin.example:1936/live"
    with pytest.raises(RtmpError):
        Target("rtmp://host/only-app")


@pytest.mark.nginx
def test_play_reads_tags_and_sees_the_end(nginx: NginxRtmp, av_clip: Path) -> None:
    """Against nginx-rtmp: headers and frames arrive in order; unpublishing ends the play."""
    name = stream_name("rt")
    pub = publish(av_clip, nginx.url(name))
    try:
        wait_live(nginx.url(name))
        play = RtmpPlay(nginx.url(name), 2.0)
        play.open(lambda: False)
        tags: list[Tag] = []
        end = time.monotonic() + 3
        while time.monotonic() < end:
            tags += play.poll()
            time.sleep(0.1)
        assert not play.ended
    finally:
        pub.stop()
    for _ in range(50):
        play.poll()
        if play.ended:
            break
        time.sleep(0.1)
    play.close()
    assert play.ended
    video = [t for t in tags if t.type == VIDEO]
    audio = [t for t in tags if t.type == AUDIO]
    assert video[0].is_config()
    assert video[1].is_keyframe()
    assert audio[0].is_config()
    assert len(audio) > 100
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(video))
    # 25 fps read every 0.1 s from the first key frame on: no frame lost in between
    assert len(video) > 40
    assert {b.ts - a.ts for a, b in itertools.pairwise(video[1:])} == {40}


@pytest.mark.nginx
def test_native_pull_matches_ffmpeg(nginx: NginxRtmp, av_clip: Path) -> None:
    """The native pull describes the stream as FFmpeg's does and yields the same packets. Its
    description is a copy held by a container that is never written: the probe that made it
    is closed (with the decoder and frame buffers it held)."""
    name = stream_name("rt")
    pub = publish(av_clip, nginx.url(name))
    try:
        wait_live(nginx.url(name))
        native = open_source(nginx.url(name), 2.0)
        ffmpeg = open_source(nginx.url(name), 2.0, native=False)
        assert isinstance(native, FlvPull)
        assert isinstance(ffmpeg, AvPull)
        try:
            for k in (0, 1):
                a, b = native.inputs.streams[k], ffmpeg.inputs.streams[k]
                assert a.codec_context.name == b.codec_context.name
                assert a.codec_context.extradata == b.codec_context.extradata
                assert native.inputs.signature(k) == ffmpeg.inputs.signature(k)
                assert native.inputs.tb[k] == ffmpeg.inputs.tb[k]
            assert native.inputs.streams[0].codec_context.width == 320
            assert isinstance(native.inputs.keep, av.container.OutputContainer)
            ours = _first_video_frames(native, 100)
            theirs = _first_video_frames(ffmpeg, 30)
        finally:
            native.close()
            ffmpeg.close()
    finally:
        pub.stop()
    # Both joined the live stream at different moments: compare where they overlap.
    start = next(i for i, p in enumerate(ours) if p[0] == theirs[0][0])
    assert ours[start : start + len(theirs)] == theirs


def _first_video_frames(pull: object, n: int) -> list[tuple[int, int, bool, bytes]]:
    out = []
    for pkt, k, dts, pts, dur, key in pull.packets():  # type: ignore[attr-defined]
        if k == 0:
            data = bytes(pkt.body[5:]) if isinstance(pkt, Tag) else bytes(pkt)
            out.append((dts, pts, key, data))
            assert dur == 40
        if len(out) == n:
            break
    return out


def test_nothing_listening_is_a_source_error() -> None:
    """A refused connection is a source error (the recorder retries), not a crash."""
    with pytest.raises(SourceError):
        open_source(f"rtmp://127.0.0.1:{free_port()}/live/x", 1.0)


@pytest.mark.nginx
def test_stream_not_live_times_out(nginx: NginxRtmp) -> None:
    """nginx-rtmp holds a play of an unpublished stream open: no media within the timeout."""
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="no media"):
        open_source(nginx.url(stream_name("absent")), 1.0)
    assert time.monotonic() - t0 < 5


@pytest.mark.nginx
def test_passthrough_flv_is_playable(nginx: NginxRtmp, av_clip: Path, tmp_path: Path) -> None:
    """Tags written as they came, behind cdnrec's header and metadata, open in FFmpeg."""
    name = stream_name("rt")
    pub = publish(av_clip, nginx.url(name))
    try:
        wait_live(nginx.url(name))
        pull = open_source(nginx.url(name), 2.0)
        assert isinstance(pull, FlvPull)
        out = tmp_path / "x.flv"
        with out.open("wb") as fh:
            fh.write(b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00")
            for tag in pull.config:
                assert tag is not None
                fh.write(tag_bytes(tag.type, 0, tag.body))
            for n, (pkt, _k, dts, _pts, _dur, _key) in enumerate(pull.packets(), 1):
                fh.write(tag_bytes(pkt.type, dts, pkt.body))
                if n == 100:
                    break
        pull.close()
    finally:
        pub.stop()
    with av.open(str(out)) as c:
        assert {s.type for s in c.streams} == {"video", "audio"}
        assert sum(1 for p in c.demux() if p.size) == 100


@pytest.mark.nginx
def test_opening_reads_run_on_a_pump_and_slow_down_after_the_first_key_frame(
    nginx: NginxRtmp, av_clip: Path
) -> None:
    """The reads that wait for a stream's first frames are steps its runner runs (a recorder's
    pump); the pull then reads every ``POLL_FIRST`` until its first video key frame is handed
    on, and about every ``POLL`` after (sooner only when the socket's buffer fills faster)."""
    name = stream_name("pumped")
    pub = publish(av_clip, nginx.url(name))
    threads: list[str] = []

    def watched(steps: Steps) -> Steps:
        while True:
            threads.append(threading.current_thread().name)
            try:
                pause = next(steps)
            except StopIteration as end:
                return end.value
            yield pause

    pumps = Pumps(1)
    try:
        wait_live(nginx.url(name))
        pull = open_source(
            nginx.url(name), 2.0, run=lambda s: pumps.run(Job(watched(s), threading.Event()))
        )
        try:
            assert isinstance(pull, FlvPull)
            assert threads
            assert all(t.startswith("pump-") for t in threads)
            assert pull.inputs.streams[0] is not None
            assert pull.inputs.streams[1] is not None
            keyed, pauses = False, []
            for item in itertools.islice(pull.steps(), 1000):
                if isinstance(item, float):
                    pauses.append((keyed, item))
                    if len(pauses) == 3:
                        break
                    time.sleep(item)  # the next pause follows from what this one let arrive
                elif item[1] == 0 and item[5]:  # a video key frame
                    keyed = True
        finally:
            pull.close()
    finally:
        pub.stop()
    assert pauses
    assert all(p == POLL_FIRST for k, p in pauses if not k)
    # about POLL: a second of this clip takes about a third of a new connection's buffer
    assert all(POLL / 2 < p <= POLL for k, p in pauses if k)
    assert pauses[-1][0]


def _play_held_small(kind: str, clip: Path, nginx: NginxRtmp) -> tuple[TagSession, Proc]:
    """An open RTMP or HTTP-FLV play of ``clip`` whose receive buffer is held at the 128 KiB a
    connection starts with (Linux doubles the 64 KiB asked; holding it stops Linux growing it)."""
    if kind == "rtmp":
        url = nginx.url(stream_name("outgrown"))
        proc = publish(clip, url)
        wait_live(url)
        play: RtmpPlay | HttpFlvPlay = RtmpPlay(url, 2.0)
        play.open(lambda: False)
    else:
        url = f"http://127.0.0.1:{free_port()}/live/outgrown.flv"
        proc = listen_flv(clip, url)
        for _ in range(50):
            play = HttpFlvPlay(url, 2.0)
            try:
                play.open(lambda: False)
                break
            except HttpFlvError:
                time.sleep(0.1)
    assert play.sock is not None
    play.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    return play, proc


@pytest.mark.nginx
@pytest.mark.parametrize("kind", ["rtmp", "http"])
def test_a_pull_whose_receive_buffer_is_outgrown_keeps_the_live_pace(
    kind: str, nginx: NginxRtmp, clip_dir: Path
) -> None:
    """A second of a 2 Mbit/s stream does not fit in the receive buffer a connection starts with
    (held at that size here, as on a connection Linux does not grow it for): the pull reads it
    after shorter pauses and keeps the live stream's pace, instead of falling behind it a little
    more every second."""
    play, proc = _play_held_small(kind, make_clip(clip_dir, "av_2mbit"), nginx)
    try:
        pull = FlvPull(play, 2.0, threading.Event().wait)
        pauses: list[float] = []
        first = last = None
        start = time.monotonic()
        try:
            for item in pull.steps():
                if isinstance(item, float):
                    if time.monotonic() - start > 8:
                        break
                    pauses.append(item)
                    time.sleep(item)
                elif item[1] == 0:  # video
                    first = item[2] if first is None else first
                    last = item[2]
        finally:
            pull.close()
        wall = time.monotonic() - start
    finally:
        proc.stop()
    assert first is not None
    assert last is not None
    assert (last - first) / 1000 > wall - 1.5  # read every POLL: about half of it
    assert min(pauses[2:]) < POLL / 2


def test_flv_reader_splits_a_byte_stream() -> None:
    """Header skipped, tags rebuilt across arbitrary reads, garbage refused."""
    stream = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"
    stream += tag_bytes(VIDEO, 0x01000028, b"v" * 5000) + tag_bytes(AUDIO, 40, b"a" * 10)
    reader = FlvReader()
    tags = [t for i in range(0, len(stream), 333) for t in reader.feed(stream[i : i + 333])]
    assert [(t.type, t.ts, t.body) for t in tags] == [
        (VIDEO, 0x01000028, b"v" * 5000),
        (AUDIO, 40, b"a" * 10),
    ]
    with pytest.raises(FlvError):
        FlvReader().feed(b"<html>not flv</html>")


def test_http_flv_is_read_natively(av_clip: Path) -> None:
    """HTTP-FLV from ffmpeg's own HTTP server goes through the native pull."""
    url = f"http://127.0.0.1:{free_port()}/live/x.flv"
    pub = listen_flv(av_clip, url)
    try:
        for _ in range(50):
            try:
                pull = open_source(url, 2.0)
                break
            except SourceError:
                time.sleep(0.1)
        assert isinstance(pull, FlvPull)
        try:
            frames = _first_video_frames(pull, 50)
        finally:
            pull.close()
    finally:
        pub.stop()
    assert frames[0][2]
    assert [b[0] - a[0] for a, b in itertools.pairwise(frames)] == [40] * 49


class _Answers(BaseHTTPRequestHandler):
    """/moved redirects to /flv, /flv is an FLV header and nothing more, /html is not FLV."""

    def do_GET(self) -> None:
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/flv")
            self.end_headers()
        elif self.path == "/flv":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00")
        elif self.path == "/html":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>a login page</html>")
        else:
            self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    """A local HTTP server answering the cases of ``_Answers``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/missing", "HTTP 404"),
        ("/html", "not FLV"),
        ("/moved", "ended"),  # followed to /flv, which ends before any media
        ("/flv", "ended"),
    ],
)
def test_http_flv_errors_are_source_errors(http_server: str, path: str, error: str) -> None:
    """Every failure of an HTTP-FLV source is a clear source error (retried by the recorder)."""
    with pytest.raises(SourceError, match=error):
        open_source(http_server + path, 1.0)


def test_pings_acks_and_peer_bandwidth_are_answered() -> None:
    """Control messages get the answers RTMP servers expect, on the wire."""
    ours, theirs = socket.socketpair()
    play = RtmpPlay("rtmp://127.0.0.1/live/x", 1.0)
    play.sock = ours
    try:
        ping = (6).to_bytes(2, "big") + (123456).to_bytes(4, "big")
        play._control(Message(4, 0, ping))  # user control: ping request
        play._control(Message(6, 0, (5_000_000).to_bytes(4, "big") + b"\x02"))
        play._control(Message(5, 0, (1000).to_bytes(4, "big")))  # window: ack every 500 B
        play._received_bytes(600)
        reader = ChunkReader()
        got = reader.feed(theirs.recv(4096))
    finally:
        ours.close()
        theirs.close()
    assert [(m.type, m.body) for m in got] == [
        (4, (7).to_bytes(2, "big") + (123456).to_bytes(4, "big")),  # ping response
        (5, (5_000_000).to_bytes(4, "big")),  # our window acknowledgement size
        (3, (600).to_bytes(4, "big")),  # acknowledgement of the bytes received
    ]


def test_tag_parts_are_written_whole_across_short_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FLV tags buffered as parts reach the file byte for byte in order, also when every
    ``writev`` writes only a few bytes (as a full disk or a signal can make it) and when there
    are more parts than one call takes."""
    real = os.writev
    calls = []

    def short(fd: int, parts: list[bytes]) -> int:
        calls.append(len(parts))
        return real(fd, [b"".join(parts)[:7]])

    parts = [bytes([i % 251]) * (i % 13) + b"x" for i in range(3000)]
    path = tmp_path / "parts.bin"
    with path.open("wb", buffering=0) as fh:
        monkeypatch.setattr(os, "writev", short)
        write_parts(fh.fileno(), list(parts))
    assert path.read_bytes() == b"".join(parts)
    assert max(calls) <= os.sysconf("SC_IOV_MAX")
