"""An in-memory learner and a bare tutor link: the handover without a browser or a database.

Used by the handover's tests and by `bench/handover.py`. `MemoryLearner` behaves like the page's
playback worklet: it plays the assistant items one after the other, each from its first frame,
reports `start`, `progress` (every 500 ms of audio) and `end` of each item as the page does, flushes
at once when asked and says how many ms of the item it played. It plays `speed` times faster than
real time (tests: `FAST`, since what they check does not depend on how long the learner listens;
a test about pacing and the benchmark pass `speed=1.0`). It keeps a timeline of everything it
received, so tests can check what the learner would have heard, and in which order.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from tutor.runtime.handover import AssessmentStore, TutorLink
from tutor import persona
from tutor.realtime.client import RealtimeClient
from tutor.realtime.playback import DEFAULT_MARGIN
from tutor.realtime.relay import LearnerPort, PlaybackPosition, PlaybackWatch, SpeechRelay
from tutor.realtime.simulator.audio import synthesize
from tutor.realtime import wire
from tutor.realtime.audio import audio_ms
from tutor.realtime.tasks import cancel_and_wait
from tutor.realtime.wire import State
from tutor.runtime.narrator import Narrator
from tutor.upstream import Upstream, relay_with_errors_logged

PROGRESS_MS = 500  # the page's playback worklet reports progress this often (PROGRESS_S)
FAST = 50.0  # the tests' learner: a 1.5 s item plays in 30 ms, still item by item with every report


@dataclass
class HeardItem:
    item_id: str
    role: str
    voice: str | None
    started_at: float  # when `audio.start` arrived
    audio: bytearray = field(default_factory=bytearray)
    flushed: bool = False
    complete: bool = False  # `audio.end` arrived
    finished: bool = False  # played to its end
    played_ms: float = 0.0  # the play head, as of `anchor`
    anchor: float | None = None  # loop time when the play head was last at played_ms and playing


class MemoryLearner(LearnerPort):
    """A browser stand-in that plays, reports and answers `playback.flush` like the page does.

    `reports=False` is a page that never reports playback (the server then waits out each item's bound).
    `speed`: how many times faster than real time it plays (1.0: as the page does).
    """

    def __init__(
        self, flush_delay: float = 0.0, *, reports: bool = True, margin: float = DEFAULT_MARGIN, speed: float = FAST
    ):
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self.events: list[dict] = []
        self.timeline: list[tuple[str, Any]] = []  # ("event", dict) | ("audio", item_id)
        self.items: dict[str, HeardItem] = {}
        self.current: HeardItem | None = None
        self.flush_delay = flush_delay  # browser round trip; the answer comes back after it
        self.reports_enabled = reports
        self.failed = False  # a task of the session raised (session_failed)
        self.reports: list[tuple[str, str, int]] = []  # (kind, item_id, played_ms) as sent to the server
        self.playback = PlaybackWatch(margin)
        self._loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()
        self._player: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    async def send_event(self, event: dict) -> None:
        self.events.append(event)
        self.timeline.append(("event", event))
        if event["type"] == "audio.start":
            self.current = self.items[event["item_id"]] = HeardItem(
                event["item_id"], event["role"], event["voice"], self._loop.time()
            )
            if self._player is None:
                self._player = self._loop.create_task(self._play(), name="memory-learner-player")
        elif event["type"] == "audio.end" and event["item_id"] in self.items:
            self.items[event["item_id"]].complete = True
            self._wake()

    async def send_audio(self, pcm: bytes) -> None:
        item = self.current
        self.timeline.append(("audio", item.item_id if item else None))
        if item is None:
            return
        item.audio += pcm
        self._wake()

    def session_failed(self) -> None:
        """As the page sees it: one `session_error` (a test that owns the session closes it)."""
        self.failed = True
        self.events.append(wire.error("session_error", "Something went wrong on our side; the session has ended."))

    async def request_flush(self) -> asyncio.Future:
        self.playback.flushed()
        await self.send_event(wire.playback_flush(f"flush_{len(self.events)}"))
        position = self._flush()
        future = self._loop.create_future()
        if self.flush_delay:
            task = self._loop.create_task(self._answer_later(future, position))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            future.set_result(position)
        return future

    async def _answer_later(self, future: asyncio.Future, position: PlaybackPosition) -> None:
        await asyncio.sleep(self.flush_delay)  # the browser's answer travelling back
        if not future.done():
            future.set_result(position)

    def _flush(self) -> PlaybackPosition:
        """Drop everything queued; the item playing (or else the first queued) and how much of it played."""
        self.current = None
        waiting = [i for i in self.items.values() if not i.flushed and not i.finished]
        for item in waiting:
            item.flushed = True
        self._wake()
        if not waiting:
            return PlaybackPosition(None, 0)
        return PlaybackPosition(waiting[0].item_id, int(self._position(waiting[0])))  # items play in order

    def _position(self, item: HeardItem) -> float:
        """Where the play head of `item` is now: the time since it last moved (at `speed`), within what arrived."""
        if item.anchor is None:
            return item.played_ms
        played = (self._loop.time() - item.anchor) * 1000 * self.speed
        return min(audio_ms(len(item.audio)), item.played_ms + played)

    async def _play(self) -> None:
        """The playback worklet: items in order, each at `speed`, reporting as the page does."""
        while True:
            item = next((i for i in self.items.values() if not i.flushed and not i.finished and i.audio), None)
            if item is None:
                await self._next_arrival()
                continue
            if item.anchor is None:  # starts now, or resumes after running dry
                if item.played_ms == 0:
                    self._report("start", item, 0)
                item.anchor = self._loop.time()
            available = audio_ms(len(item.audio))
            if item.played_ms >= available:
                item.anchor = None
                if item.complete:
                    item.finished = True
                    self._report("end", item, int(item.played_ms))
                else:
                    await self._next_arrival()  # ran dry: wait for more of it
                continue
            next_report = (int(item.played_ms) // PROGRESS_MS + 1) * PROGRESS_MS
            await asyncio.sleep((min(available, next_report) - item.played_ms) / 1000 / self.speed)  # playing
            if item.flushed:
                continue
            # A late wake-up (a loaded machine) does not skip reports: like the worklet, which reports as
            # its play head passes each 500 ms, the head stops at the report it was playing towards.
            item.played_ms, item.anchor = min(self._position(item), next_report), self._loop.time()
            if item.played_ms >= next_report:
                self._report("progress", item, int(item.played_ms))

    async def _next_arrival(self) -> None:
        event = self._arrived
        await event.wait()

    def _wake(self) -> None:
        self._arrived.set()
        self._arrived = asyncio.Event()

    def _report(self, kind: str, item: HeardItem, played_ms: int) -> None:
        if self.reports_enabled:
            self.reports.append((kind, item.item_id, played_ms))
            self.playback.report(item.item_id, kind, played_ms)

    def of_role(self, role: str) -> list[HeardItem]:
        return [item for item in self.items.values() if item.role == role]

    def index_of(self, event_type: str) -> int:
        return next(i for i, (kind, e) in enumerate(self.timeline) if kind == "event" and e["type"] == event_type)

    async def close(self) -> None:
        await cancel_and_wait(*self._tasks, *([self._player] if self._player else []))


class BareTutorLink(TutorLink):
    """A tutor session without placement or database: enough for the handover (a TutorLink)."""

    def __init__(self, upstream: Upstream, learner: LearnerPort, *, voice: str = "marin", step_timeout: float = 5.0):
        self.upstream = upstream
        self.learner = learner
        self.voice = voice
        self.step_timeout = step_timeout
        self.learner_audio_on = True
        self.narrator = Narrator(learner, upstream=upstream, step_timeout=step_timeout)
        self.client = upstream.client("tutor")
        self.relay = SpeechRelay(learner, role="tutor", voice=lambda: self.client.tracker.voice)
        self.client.handler = relay_with_errors_logged(self.relay, "tutor")

    async def connect(self, level: str = "A2", language: str = "es") -> None:
        session = persona.tutor_session_config(
            target_language=language,
            native_language="en",
            level=level,
            voice=self.voice,
            transcription_model=settings.PARLA_TRANSCRIPTION_MODEL,  # the current default (config/settings.py)
            speed_beginner=1.0,
            speed_default=1.0,
        )
        await self.client.open(session, self.step_timeout)

    def stop_learner_audio(self) -> None:
        self.learner_audio_on = False

    async def set_state(self, state: State) -> None:
        await self.learner.send_event(wire.state(state))

    def error_counts(self) -> tuple[int, int]:
        """(server error events seen by the tutor and narrator sessions, of which tolerated by design)."""
        clients = [self.client, *self.narrator.opened]
        return sum(len(c.tracker.error_codes) for c in clients), sum(c.tolerated_errors for c in clients)

    def error_codes(self) -> list[str]:
        return [code for c in (self.client, *self.narrator.opened) for code in c.tracker.error_codes]

    async def close(self) -> None:
        await self.narrator.discard()
        await self.client.close()


MOMENTS = ("never_spoke", "before_created", "mid_audio", "after_last_delta", "between_responses", "barge_in")


async def drive_to(client: RealtimeClient, moment: str, timeout: float = 10) -> None:
    """Bring a tutor session to `moment` of a response's lifecycle (where a ceiling may land)."""
    if moment == "never_spoke":
        return
    await client.send({"type": "response.create"})
    if moment == "before_created":
        return
    waits = {
        "mid_audio": "response.output_audio.delta",
        "after_last_delta": "response.output_audio.done",
        "between_responses": "response.done",
        "barge_in": "response.output_audio.delta",
    }
    await client.wait_for(waits[moment], timeout)
    if moment == "barge_in":  # the learner talks over the tutor: server VAD cuts the response
        await client.send_audio(synthesize("hola hola hola", "learner", 400))
        await client.wait_for("input_audio_buffer.speech_started", timeout)


class MemoryStore(AssessmentStore):
    """An AssessmentStore in memory: the statuses an assessment went through, in order."""

    def __init__(self) -> None:
        self.history: list[tuple[str, Any]] = []

    async def graded(self, assessment_id: int, result) -> None:
        self.history.append(("graded", result))

    async def delivered(self, assessment_id: int, notes: str) -> None:
        self.history.append(("delivered", notes))

    async def failed(self, assessment_id: int, reason: str) -> None:
        self.history.append(("delivery_failed", reason))

    @property
    def statuses(self) -> list[str]:
        return [status for status, _ in self.history]
