"""The learner side of a session: what the browser must be able to do, and the speech relay.

`LearnerPort` is the interface the tutor session and the handover talk to; the consumer implements it
over the `/ws/tutor/` socket (tests and the benchmark implement it in memory). `SpeechRelay` forwards one
upstream session's assistant speech (audio deltas and transcripts) to a `LearnerPort`. `PlaybackWatch`
is the learner's `Playback` (what the page reported it played) on the session clock, with a way
to wait for it to change.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tutor.realtime import wire
from tutor.realtime.audio import audio_ms
from tutor.realtime.clock import Clock, current as current_clock
from tutor.realtime.playback import DEFAULT_MARGIN, Playback, PlayedItem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlaybackPosition:
    """What the browser reported after flushing: the item it was playing and how much of it it played."""

    item_id: str | None
    played_ms: int


class PlaybackWatch:
    """One learner's `Playback` on the session clock (tutor.realtime.clock); `changed()` waits for its next change.

    Fed by the speech relays (audio sent), the learner port (flushes) and the page's reports; read by
    the session (barge-in, tutor_speaking / listening) and the handover (delivered = heard).
    """

    def __init__(self, margin: float = DEFAULT_MARGIN, clock: Clock | None = None) -> None:
        self.state = Playback(margin)
        self.clock = clock or current_clock()
        self._changed = asyncio.Event()

    def now(self) -> float:
        return self.clock.now()

    def sent(self, item_id: str, role: str, pcm_bytes: int) -> None:
        self.state.sent(item_id, role, audio_ms(pcm_bytes), self.now())
        self._notify()

    def complete(self, item_id: str) -> None:
        self.state.complete(item_id)
        self._notify()

    def report(self, item_id: str, kind: str, played_ms: int) -> bool:
        known = self.state.report(item_id, kind, played_ms, self.now())
        self._notify()
        return known

    def flushed(self) -> None:
        self.state.flushed()
        self._notify()

    def flush_answered(self, item_id: str | None, played_ms: int) -> None:
        self.state.flush_answered(item_id, played_ms)

    def audible(self) -> PlayedItem | None:
        return self.state.audible(self.now())

    def heard(self) -> PlaybackPosition | None:
        """The audible item and how much of it the learner has heard, by the page's reports (the
        fallback when the page does not answer a flush); None when nothing is audible."""
        item = self.audible()
        if item is None:
            return None
        return PlaybackPosition(item.item_id, self.state.heard_ms(item.item_id, self.now()))

    async def changed(self) -> None:
        """Return at the next change, or when a bound passes (an unreported end is then assumed)."""
        event = self._changed
        deadline = self.state.deadline(self.now())
        try:
            async with self.clock.timeout_at(deadline):  # None: no bound to pass, wait for a change
                await event.wait()
        except TimeoutError:
            pass

    async def until_over(self, item_ids: list[str]) -> dict[str, str]:
        """Wait until every item is over for the learner; {item_id: how} (playback.REPORTED, ...).

        Bounded: an item the page never reports is over once its bound passes (its length played in
        real time plus the margin), so this returns even for a page that went silent.
        """
        while True:
            outcomes = {item_id: self.state.outcome(item_id, self.now()) for item_id in item_ids}
            if all(outcomes.values()):
                return outcomes
            await self.changed()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


class LearnerPort:
    """What a learner's browser offers the session. Subclasses implement every method and create
    `playback` (a PlaybackWatch) before the session starts; `request_flush` tells it of the flush."""

    playback: PlaybackWatch

    async def send_event(self, event: dict) -> None:
        raise NotImplementedError("LearnerPort subclasses must implement send_event()")

    async def send_audio(self, pcm: bytes) -> None:
        raise NotImplementedError("LearnerPort subclasses must implement send_audio()")

    def session_failed(self) -> None:
        """A task of the session raised: the learner is told in Parla's words, the session is ended and
        the socket closed. Returns at once: ending the session cancels and awaits the failed task."""
        raise NotImplementedError("LearnerPort subclasses must implement session_failed()")

    async def request_flush(self) -> asyncio.Future:
        """Tell the browser to drop queued assistant audio at once.

        Returns, as soon as the request is sent, a future resolved with the browser's
        `PlaybackPosition` when it answers (`playback.flushed`).
        """
        raise NotImplementedError("LearnerPort subclasses must implement request_flush()")


class FlushRequests:
    """Outstanding `playback.flush` requests of one browser, matched to answers by `request_id`."""

    GIVEN_UP_KEPT = 32  # the latest flushes whose wait ended unanswered, whose late answers are no error

    def __init__(self) -> None:
        self._pending: dict[str, asyncio.Future] = {}
        self._given_up: collections.deque[str] = collections.deque(maxlen=self.GIVEN_UP_KEPT)
        self._ids = itertools.count(1)

    async def request(self, send_event: Callable[[dict], Awaitable[None]]) -> asyncio.Future:
        request_id = f"flush_{next(self._ids)}"
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        future.add_done_callback(lambda f: self._done(request_id, f))
        await send_event(wire.playback_flush(request_id))
        return future

    def _done(self, request_id: str, future: asyncio.Future) -> None:
        self._pending.pop(request_id, None)
        if future.cancelled():  # its waiter gave up (a step timeout, the session ending)
            self._given_up.append(request_id)

    def given_up(self, request_id: str) -> bool:
        """A flush this browser was sent and the server stopped waiting for: its answer is late, not
        wrong (a server slowed by load gives up first; issue 14), and is no error for the learner."""
        return request_id in self._given_up

    def answer(self, request_id: str, item_id: str | None, played_ms: int) -> bool:
        """Resolve the request; False if it is unknown (late, duplicate or made up)."""
        future = self._pending.pop(request_id, None)
        if future is None or future.done():
            return False
        future.set_result(PlaybackPosition(item_id or None, played_ms))
        return True


TranscriptCallback = Callable[[str, str, str], Awaitable[None]]  # (role, item_id, text)


class SpeechRelay:
    """Forwards assistant audio and transcripts of one upstream session to the learner.

    `muted` stops forwarding at once (the handover mutes the tutor before it flushes the browser, so
    no tutor audio reaches the learner after the flush). `role` says whose speech it is on the wire.
    """

    def __init__(
        self,
        learner: LearnerPort,
        role: str,
        voice: Callable[[], str | None],
        on_transcript: TranscriptCallback | None = None,
    ):
        self.learner = learner
        self.role = role
        self.voice = voice
        self.on_transcript = on_transcript
        self.muted = False
        self.audio_frames = 0
        self._current_item: str | None = None
        self._silenced: set[str] = set()  # items cut off by a barge-in: their late deltas are dropped
        self._shown: set[str] = set()  # items whose transcript the page has begun and not yet finished
        self._handlers = {
            "response.output_audio.delta": self.on_output_audio_delta,
            "response.output_audio.done": self.on_output_audio_done,
            "response.output_audio_transcript.delta": self.on_output_audio_transcript_delta,
            "response.output_audio_transcript.done": self.on_output_audio_transcript_done,
        }

    async def handle(self, event: Any) -> bool:
        """Relay `event` if it is assistant speech; True if it was."""
        handler = self._handlers.get(event.type)
        if handler is None:
            return False
        await handler(event)
        return True

    def mute(self) -> None:
        self.muted = True
        self._current_item = None

    def silence_current(self) -> str | None:
        """Stop relaying the item being spoken now (the learner interrupted it); returns its id."""
        item_id = self._current_item
        if item_id:
            self._silenced.add(item_id)
        self._current_item = None
        return item_id

    def was_silenced(self, item_id: str) -> bool:
        """True if the learner cut this item off (barge-in or a written answer)."""
        return item_id in self._silenced

    @property
    def speaking_item(self) -> str | None:
        return self._current_item

    def unmute(self, role: str | None = None) -> None:
        self.muted = False
        if role:
            self.role = role

    async def on_output_audio_delta(self, event: Any) -> None:
        if self.muted or event.item_id in self._silenced:
            return
        if event.item_id != self._current_item:
            self._current_item = event.item_id
            await self.learner.send_event(wire.audio_start(event.item_id, self.voice(), self.role))
        self.audio_frames += 1
        pcm = base64.b64decode(event.delta)
        self.learner.playback.sent(event.item_id, self.role, len(pcm))
        await self.learner.send_audio(pcm)

    async def on_output_audio_done(self, event: Any) -> None:
        if self.muted or event.item_id != self._current_item:
            return
        self._current_item = None
        self.learner.playback.complete(event.item_id)
        await self.learner.send_event(wire.audio_end(event.item_id))

    async def on_output_audio_transcript_delta(self, event: Any) -> None:
        if self.muted or event.item_id in self._silenced:
            return
        self._shown.add(event.item_id)
        await self.learner.send_event(wire.transcript(self.role, event.item_id, event.delta, final=False))

    async def on_output_audio_transcript_done(self, event: Any) -> None:
        # The final transcript is stored even when muted: it is what the model said, heard or not. A
        # line the page began to show is finished there too, muted or not (the handover mutes the
        # tutor mid-line): a line left half-written reads as a fault; its audio was cut, and the page
        # marks it interrupted when the flush dropped some.
        if not self.muted or event.item_id in self._shown:
            await self.learner.send_event(wire.transcript(self.role, event.item_id, event.transcript, final=True))
        self._shown.discard(event.item_id)
        if self.on_transcript is not None:
            await self.on_transcript(self.role, event.item_id, event.transcript)
