"""The recorder: one pull of one stream written to every requested format.

A recorder's thread connects, retries and closes; the reading loop of a batched (native) pull is
stepped by a pump thread shared with other recordings when the recorder has ``Pumps``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit

import av

from cdnrec.engine.adts import AdtsToRaw, config_from_stream, needs_conversion
from cdnrec.engine.formats import Inputs, Writer, WriterContext, writer_for
from cdnrec.engine.formats.base import AUDIO, VIDEO
from cdnrec.engine.formats.copy import CopyWriter
from cdnrec.engine.layout import Layout
from cdnrec.engine.plan import RecordingListener, RecordingPlan
from cdnrec.engine.pump import Job, Pumps, Steps, drive
from cdnrec.engine.sources import Pull, SourceError, open_source

log = logging.getLogger(__name__)

_NOT_SEEN = -(1 << 62)
_JITTER = 1.0  # s: a timestamp this far backwards is nudged forward, further is a reset
_JUMP = 10.0  # s: a timestamp this far forward is a jump, not a pause


def _where(url: str) -> str:
    """A URL without credentials or query, for messages."""
    p = urlsplit(url)
    return f"{p.scheme}://{p.hostname or ''}{':' + str(p.port) if p.port else ''}{p.path}"


class Recorder:
    """Records one stream per ``RecordingPlan`` until stopped, its deadline, or its end.

    ``run()`` blocks (call it in a thread of its own) and returns ``"ended"`` or ``"failed"``;
    source problems are retried with capped exponential backoff, never raised. With ``pumps``,
    a batched pull is read by a pump thread while ``run()`` sleeps.
    """

    def __init__(
        self,
        plan: RecordingPlan,
        listener: RecordingListener,
        *,
        clock: Callable[[], float] = time.time,
        read_timeout: float = 1.0,
        backoff: tuple[float, float] = (0.25, 5.0),
        pumps: Pumps | None = None,
    ) -> None:
        self.plan = plan
        self.listener = listener
        self.clock = clock
        self.read_timeout = read_timeout
        self.backoff = backoff
        self._stop = threading.Event()
        self.pumps = pumps
        self._job: Job | None = None
        self._state_now = ""
        self._wall_base_ms = 0.0
        self.ctx = WriterContext(
            layout=Layout(plan.storage_root, plan.path_template),
            recording_id=plan.recording_id,
            app_id=plan.app_id,
            stream_id=plan.stream_id,
            listener=listener,
            wall_ms=self._wall_ms,
            defer=self._defer,
        )
        self.writers: dict[str, Writer] = {}
        self.files_open = False
        self.tb = [Fraction(1, 1000), Fraction(1, 1000)]
        self.off = [0, 0]
        self.last = [_NOT_SEEN, _NOT_SEEN]
        self.step = [0, 0]
        self.packets = 0

    # -- public -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask ``run()`` to close every file and return (thread-safe, returns at once)."""
        self._stop.set()
        job = self._job
        if job is not None:
            job.poke()

    def run(self) -> str:
        """Record until stopped, the deadline or the end of the stream; the final state."""
        try:
            final, detail = self._run()
        except Exception as e:
            log.exception("recording %s failed", self.plan.recording_id)
            final, detail = "failed", f"{type(e).__name__}: {e}"
            try:
                self._close_all()
            except Exception:
                log.exception("closing files of %s after a failure", self.plan.recording_id)
        self._state(final, detail)
        return final

    # -- attempts -----------------------------------------------------------------------------
    def _run(self) -> tuple[str, str]:
        plan, clock = self.plan, self.clock
        urls = plan.source_urls()
        delay = self.backoff[0]
        down_since: float | None = None  # when the source went away (None: never recorded)
        started = clock()
        error = ""
        self._state("connecting")
        while True:
            if self._stop.is_set():
                return self._finish("stopped")
            if plan.deadline is not None and clock() >= plan.deadline:
                return self._finish("deadline reached")
            pull, err = self._connect(urls)
            if pull is not None:
                before = self.packets
                try:
                    reason = self._drive(pull, self._pump(pull, down_since))
                finally:
                    pull.close()
                if reason in ("stopped", "deadline reached"):
                    return self._finish(reason)
                error = reason
                if self.packets > before:
                    down_since = clock()
                    delay = self.backoff[0]
                    self._state("interrupted", reason)
            else:
                error = err
            now = clock()
            if down_since is not None and now - down_since > plan.resume_window:
                if self.files_open:
                    self._close_all()
                if not plan.wait_for_stream:
                    return self._finish(f"source gone longer than the resume window ({error})")
                self._state("waiting", error)
            elif down_since is None:
                if not plan.wait_for_stream and now - started > plan.resume_window:
                    return "failed", f"stream is not live: {error}"
                if self._state_now == "connecting" and plan.wait_for_stream:
                    self._state("waiting", error)
            if self._stop.wait(delay):
                continue
            delay = min(delay * 2, self.backoff[1])

    def _connect(self, urls: tuple[str, ...]) -> tuple[Pull | None, str]:
        errors = []
        for url in urls:
            if self._stop.is_set():
                break
            try:
                pull = open_source(
                    url,
                    self.read_timeout,
                    self._stop.wait,
                    native=self.plan.native_pull,
                    run=self._run_steps,
                )
                return pull, ""
            except SourceError as e:
                errors.append(f"{_where(url)}: {e}")
        return None, "; ".join(errors) or "stopped"

    def _finish(self, detail: str) -> tuple[str, str]:
        self._close_all()
        return "ended", detail

    def _close_all(self) -> None:
        first: Exception | None = None
        for w in self.writers.values():
            try:
                w.close()
            except Exception as e:
                first = first or e
        self.files_open = False
        if first is not None:
            raise first

    def _flush(self) -> None:
        for w in self.writers.values():
            w.flush()

    def _state(self, state: str, detail: str = "") -> None:
        if state != self._state_now:
            self._state_now = state
            self.listener.on_state(state, detail)

    def _defer(self, work: Callable[[], None]) -> None:
        """Finish a closed file: on this recording's thread while a pump runs its loop."""
        job = self._job
        if job is None:
            work()
        else:
            job.defer(work)

    def _wall_ms(self, t: float) -> int:
        return int(self._wall_base_ms + t * 1000.0)

    # -- one pull -----------------------------------------------------------------------------
    def _setup_writers(self, inputs: Inputs) -> list[Writer]:
        audio = inputs.codec(AUDIO)
        for fmt in self.plan.formats:
            w = self.writers.get(fmt)
            if w is not None and fmt == "aac" and isinstance(w, CopyWriter) != (audio == "aac"):
                w.close()  # the source audio codec changed: copy <-> re-encode
                w = None
            if w is None:
                w = self.writers[fmt] = writer_for(fmt, self.ctx, self.plan, audio)
            w.configure(inputs)
        return list(self.writers.values())

    def _drive(self, pull: Pull, steps: Steps) -> str:
        """Run a pull's reading loop: on a pump if it reads in batches and pumps are given."""
        return self._run_steps(steps) if pull.batched else drive(steps, self._stop.wait)

    def _run_steps(self, steps: Steps) -> str:
        """Run steps that pause between reads: on a pump when pumps are given, this thread
        waiting meanwhile (a stop hurries them)."""
        if self.pumps is None:
            return drive(steps, self._stop.wait)
        self._job = job = Job(steps, self._stop)
        try:
            return self.pumps.run(job)
        finally:
            self._job = None

    def _pump(self, pull: Pull, down_since: float | None) -> Steps:
        """The reading loop of one pull: yields the pauses between batched reads, returns why
        the pull ended."""
        inputs = pull.inputs
        video, audio = inputs.streams
        if video is None and audio is None:
            return "source has no audio or video"
        adts = None
        if pull.adts_possible and audio is not None and needs_conversion(audio):
            adts = AdtsToRaw(audio)
        writers: list[Writer] = []
        jitter = [round(_JITTER / tb) for tb in inputs.tb]
        jump = [round(_JUMP / tb) for tb in inputs.tb]
        off, last, step = self.off, self.last, self.step
        want_key = video is not None
        anchored = False
        stopping = self._stop.is_set
        deadline = self.plan.deadline
        clock = self.clock
        n = 0
        pull.idle = self._flush
        packets = pull.steps()
        # Only reading is a source error (retried); anything a writer raises fails the recording.
        try:
            while True:
                try:
                    item = next(packets)
                except StopIteration:
                    return pull.ended or "source ended"
                except SourceError as e:
                    return f"read error: {e}"
                if item.__class__ is float:
                    yield item
                    continue
                pkt, k, dts, pts, dur, key = item  # type: ignore[misc]
                if not anchored:
                    if want_key and (k != VIDEO or not key):
                        if adts is not None and k == AUDIO:
                            adts.observe(pkt)
                        if stopping():
                            return "stopped"
                        continue  # files start on a video keyframe
                    if adts is not None:
                        inputs.extradata[AUDIO] = adts.config or config_from_stream(audio)
                    writers = self._setup_writers(inputs)
                    self._anchor(inputs, dts, k, down_since)
                    anchored = True
                if adts is not None and k == AUDIO:
                    try:
                        pkt = adts.filter(pkt)
                    except av.FFmpegError:
                        continue  # not ADTS after all: a damaged frame is dropped
                    if pkt is None:
                        continue
                d = dts - off[k]
                l_ = last[k]
                if d <= l_ or d - l_ > jump[k]:
                    d = self._retime(k, dts, d, jitter[k])
                else:
                    step[k] = d - l_
                last[k] = d
                p = d if pts is None else pts - (dts - d)
                for w in writers:
                    w.write(pkt, k, d, p, dur, key)
                n += 1
                if not n & 31:  # every ~0.5 s of a typical stream
                    self.packets += 32
                    if stopping():
                        return "stopped"
                    if deadline is not None and clock() >= deadline:
                        return "deadline reached"
        finally:
            self.packets += n & 31

    def _anchor(self, inputs: Inputs, dts: int, k: int, down_since: float | None) -> None:
        """First packet of a pull: map its time onto the recording timeline."""
        now = self.clock()
        old = [(self.last[j] + self.step[j]) * self.tb[j] for j in (VIDEO, AUDIO)]
        seen = [self.last[j] != _NOT_SEEN for j in (VIDEO, AUDIO)]
        resume_t = float(max([o for o, s in zip(old, seen, strict=True) if s], default=0))
        if down_since is not None and self.files_open:
            if now - down_since > self.plan.resume_window:
                self._close_all()
            else:
                for w in self.writers.values():
                    w.gap(resume_t, now - down_since)
        t_first = dts * inputs.tb[k]
        for j in (VIDEO, AUDIO):
            tb = inputs.tb[j]
            self.off[j] = round(t_first / tb) - round(resume_t / tb)
            self.last[j] = round(old[j] / tb) - 1 if seen[j] else _NOT_SEEN
            self.step[j] = 1
        self.tb = list(inputs.tb)
        self._wall_base_ms = now * 1000.0 - resume_t * 1000.0
        self.files_open = True
        self._state("recording")

    def _retime(self, k: int, dts: int, d: int, jitter: int) -> int:
        """Slow path: the first packet of a kind, or a timestamp that went back or jumped."""
        last = self.last[k]
        if last == _NOT_SEEN:
            return max(d, 0)
        if last - jitter <= d <= last:
            # Small reordering: keep dts strictly increasing, by 1 ms so that millisecond
            # containers (FLV) see it too.
            return last + max(1, round(Fraction(1, 1000) / self.tb[k]))
        # A reset or jump: continue right after the last packet of this kind.
        new = last + max(self.step[k], 1)
        self.off[k] = dts - new
        return new

    # Used by tests and the supervisor's metrics.
    def stats(self) -> dict[str, Any]:
        """Counters of this recorder."""
        return {"packets": self.packets, "state": self._state_now}
