"""One response at a time, whatever mix of tool calls, speech, written answers and interruptions
(issue 12, item 7), through the consumer with the simulator as upstream.

The upstream's replies to an answer hold the `record_probe` call and then the tutor's speech
(`probe_shape`), as the gpt-realtime-2 generation's do. Parla's side of the upstream socket is recorded
(every client event it sent and every server event it read, with the time), so the tests see what the
issue measured: refused `response.create`, and tutor responses started while the learner speaks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import numpy as np
import pytest
from channels.testing import WebsocketCommunicator

from config.asgi import application
from tutor.persona import SILENCE_MS_BEGINNER
from tutor.realtime.client import RealtimeClient
from tutor.realtime.tracker import ResponseTracker
from tutor.testing.learners import written_answer
from tutor.testing.realtime_client import start_simulator

pytestmark = pytest.mark.django_db(transaction=True)

ALREADY_ACTIVE = "conversation_already_has_active_response"


class Wire:
    """Parla's upstream traffic of the tutor session: (time, "sent" | "read", event type, event)."""

    def __init__(self) -> None:
        self.log: list[tuple[float, str, str, object]] = []

    def of(self, direction: str, kind: str) -> list[tuple[float, object]]:
        return [(t, e) for t, d, k, e in self.log if d == direction and k == kind]

    def errors(self) -> list[str]:
        return [e.error.code for _t, e in self.of("read", "error")]

    def speaking_windows(self) -> list[tuple[float, float]]:
        """The learner's turns as the server saw them: speech_started to committed."""
        starts = [t for t, _e in self.of("read", "input_audio_buffer.speech_started")]
        ends = [t for t, _e in self.of("read", "input_audio_buffer.committed")]
        return [(s, next((e for e in ends if e >= s), float("inf"))) for s in starts]


@pytest.fixture
def wire(monkeypatch):
    """Record the tutor session's traffic (the narrator's is left out)."""
    recorded = Wire()
    clock = asyncio.get_running_loop
    send, feed = RealtimeClient.send, ResponseTracker.feed

    async def recording_send(self, event, **kwargs):  # send_audio passes validate=
        if self.name == "tutor":
            recorded.log.append((clock().time(), "sent", event["type"], event))
        return await send(self, event, **kwargs)

    def recording_feed(self, event):
        if getattr(self, "name", "tutor") == "tutor":
            recorded.log.append((clock().time(), "read", event.type, event))
        return feed(self, event)

    monkeypatch.setattr(RealtimeClient, "send", recording_send)
    monkeypatch.setattr(ResponseTracker, "feed", recording_feed)
    # the tracker does not know its session's name: only the tutor's tracker is given one
    init = RealtimeClient.__init__

    def naming_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.tracker.name = self.name

    monkeypatch.setattr(RealtimeClient, "__init__", naming_init)
    return recorded


@pytest.fixture
def learner_headers(session_cookie_headers, learner_user):
    return session_cookie_headers(learner_user)


def speech(ms: int) -> bytes:
    t = np.arange(24 * ms) / 24000
    voiced = (0.45 * np.sin(2 * np.pi * 170 * t) + 0.25 * np.sin(2 * np.pi * 340 * t)) * 22000
    return voiced.astype("<i2").tobytes()


def silence(ms: int) -> bytes:
    return bytes(48 * ms)


class Page:
    """The tutor page: records JSON events with their arrival time, answers playback flushes and, as
    the page does, reports playback (each item's end as soon as all of it arrived: no test here is
    about how long the learner listens, so none waits out an item's length plus the margin)."""

    def __init__(self, communicator: WebsocketCommunicator, report_playback: bool = True) -> None:
        self.ws = communicator
        self.report_playback = report_playback
        self.events: list[tuple[float, dict]] = []
        self.audio_item: str | None = None
        self.audio_bytes = 0

    async def next(self, kind: str, timeout: float = 10.0, **fields) -> dict:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while True:
                output = await self.ws.receive_output(timeout=timeout)
                if output["type"] == "websocket.close":
                    raise AssertionError(f"closed with {output.get('code')} while waiting for {kind}")
                if output.get("bytes") is not None:
                    self.audio_bytes += len(output["bytes"])
                    continue
                event = json.loads(output["text"])
                self.events.append((loop.time(), event))
                if event["type"] == "audio.start":
                    self.audio_item, self.audio_bytes = event["item_id"], 0
                elif event["type"] == "audio.end" and self.report_playback:
                    await self.ws.send_json_to({
                        "type": "playback.report", "item_id": event["item_id"], "kind": "end",
                        "played_ms": self.audio_bytes // 48,
                    })
                elif event["type"] == "playback.flush":
                    await self.ws.send_json_to({
                        "type": "playback.flushed", "request_id": event["request_id"],
                        "item_id": self.audio_item, "played_ms": min(self.audio_bytes // 48, 200),
                    })
                if event["type"] == kind and all(event.get(k) == v for k, v in fields.items()):
                    return event

    async def listening_after(self, done: Callable[[], bool], timeout: float = 10.0) -> None:
        """Read on (answering flushes, reporting playback) until it is the learner's turn again once
        `done()` holds: the session is quiet, so nothing that was still to come is missed."""
        async with asyncio.timeout(timeout):
            while True:
                await self.next("state", timeout=timeout, state="listening")
                if done():
                    return

    async def speak(self, pcm: bytes) -> None:
        """Send PCM in 100 ms frames at the pace a microphone produces them (this test is the learner)."""
        for start in range(0, len(pcm), 4800):
            await self.ws.send_to(bytes_data=pcm[start : start + 4800])
            await asyncio.sleep(0.1)

    def of(self, kind: str) -> list[dict]:
        return [e for _t, e in self.events if e["type"] == kind]


async def speaking_after_the_call(page: Page) -> None:
    """Wait until the reply to an answer has made its record_probe call and speaks after it."""
    await page.next("level")  # the answer was judged: the reply's call came first
    speaking = lambda: [i for i, (_t, e) in enumerate(page.events) if e["type"] in ("audio.start", "audio.end")]
    if not speaking() or page.events[speaking()[-1]][1]["type"] == "audio.end":
        await page.next("audio.start")  # the judgement came before the reply's speech began
    started = [i for i, (_t, e) in enumerate(page.events) if e["type"] == "audio.start"]
    ended = [i for i, (_t, e) in enumerate(page.events) if e["type"] == "audio.end"]
    assert started and (not ended or started[-1] > ended[-1]), "the reply is not speaking"


async def open_page(headers, report_playback: bool = True) -> Page:
    """The tutor page, started: the next event is the state of the greeting."""
    communicator = WebsocketCommunicator(application, "/ws/tutor/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    page = Page(communicator, report_playback)
    await page.next("state", state="ready")
    await communicator.send_json_to({"type": "session.start"})
    return page


def replied_after(wire: Wire, since: Callable[[], float]) -> Callable[[], bool]:
    """Whether a response created after `since()` has ended (read upstream)."""

    def done() -> bool:
        created = {e.response.id for t, e in wire.of("read", "response.created") if t > since()}
        return any(e.response.id in created for _t, e in wire.of("read", "response.done"))

    return done


@pytest.fixture
async def call_then_speech(settings):
    """Replies to answers start with the record_probe call, then speak 1.5 s at real-time pace."""
    async with start_simulator(pace=1.0, probe_shape="call_answer", audio_ms_per_response=1500) as sim:
        settings.PARLA_REALTIME_URL = sim.url
        yield sim


async def test_a_written_answer_while_the_tutor_speaks_gets_its_own_reply_and_nothing_is_refused(
    call_then_speech, learner_headers, wire
):
    page = await open_page(learner_headers)
    try:
        await page.next("audio.end")  # the greeting and the first question
        await page.ws.send_json_to({"type": "answer.text", "text": "Me llamo Ana y vivo en Madrid con mi familia."})
        await speaking_after_the_call(page)  # the learner writes over the reply that called the tool
        await page.ws.send_json_to({"type": "answer.text", "text": "Perdón, también estudio inglés."})
        await page.next("transcript", role="learner", text="Perdón, también estudio inglés.")
        answer_sent = lambda: next(t for t, e in wire.of("sent", "conversation.item.create")
                                   if e["item"]["type"] == "message" and e["item"]["content"][0]["text"].startswith("Perdón"))
        await page.listening_after(replied_after(wire, answer_sent))  # its reply spoke and was heard
    finally:
        await page.ws.disconnect()

    assert ALREADY_ACTIVE not in wire.errors()
    assert [e for e in page.of("error")] == []
    # The written answer got a reply of its own: a response created after its item, which probed it.
    answer_sent = next(t for t, e in wire.of("sent", "conversation.item.create")
                       if e["item"]["type"] == "message" and e["item"]["content"][0]["text"].startswith("Perdón"))
    replies = [e.response.id for t, e in wire.of("read", "response.created") if t > answer_sent]
    assert replies, "the written answer got no reply"
    calls = {e.response_id for _t, e in wire.of("read", "response.function_call_arguments.done")}
    assert replies[0] in calls
    # It cut the reply off at once (a written answer interrupts, like speech does)...
    first_answer = wire.of("sent", "conversation.item.create")[0][0]
    interrupted, answered = [e.response for t, e in wire.of("read", "response.done") if t > first_answer][:2]
    assert (interrupted.status, getattr(interrupted.status_details, "reason", None)) == ("cancelled", "client_cancelled")
    assert interrupted.id in calls and answered.id == replies[0]
    # ...and each answer got one reply: a reply that spoke after its call is not asked to speak again.
    assert len([t for t, _e in wire.of("read", "response.created") if t > first_answer]) == 2
    # One response at a time: never a response.create while one is active or being created.
    creates = [t for t, _e in wire.of("sent", "response.create")]
    assert len(creates) == len(wire.of("read", "response.created"))


async def test_speaking_over_a_reply_that_called_a_tool_never_starts_the_tutor_while_the_learner_speaks(
    call_then_speech, learner_headers, wire
):
    page = await open_page(learner_headers)
    try:
        await page.next("audio.end")
        await page.ws.send_json_to({"type": "answer.text", "text": "Me llamo Ana y vivo en Madrid con mi familia."})
        await speaking_after_the_call(page)  # the learner talks over the reply that called the tool
        await page.speak(speech(900) + silence(SILENCE_MS_BEGINNER + 300))  # longer than turn detection waits
        await page.next("transcript", role="learner")
        # The learner's turn was answered and heard: the session waits for the learner again.
        await page.listening_after(replied_after(wire, lambda: wire.speaking_windows()[-1][1]))
    finally:
        await page.ws.disconnect()

    windows = wire.speaking_windows()
    assert windows, "the simulator heard no speech"
    started = [t for t, _e in wire.of("read", "response.created")]
    asked = [t for t, _e in wire.of("sent", "response.create")]
    for begin, end in windows:
        assert not [t for t in started if begin < t < end], "a tutor response started while the learner spoke"
        assert not [t for t in asked if begin < t < end], "Parla asked for a response while the learner spoke"
    cancelled = [e for _t, e in wire.of("read", "response.done") if e.response.status == "cancelled"]
    assert cancelled and cancelled[0].response.status_details.reason == "turn_detected"
    assert ALREADY_ACTIVE not in wire.errors() and page.of("error") == []
    # The learner's turn was answered once it was committed: by exactly one response.
    after = [t for t in started if t > windows[-1][1]]
    assert len(after) == 1


async def test_a_level_change_that_changes_the_speed_waits_for_the_reply_to_end(settings, learner_headers, wire):
    """A2 -> B1 changes the tutor's speed; the call that moves the level comes mid-reply."""
    settings.PARLA_SPEED_BEGINNER, settings.PARLA_SPEED_DEFAULT = 0.8, 1.0
    async with start_simulator(pace=1.0, probe_shape="call_answer", audio_ms_per_response=800, true_level="C2") as sim:
        settings.PARLA_REALTIME_URL = sim.url
        # The level follows the independent rater now: each answer is one it places at the level asked.
        # The page reports playback, which decides when the learner is listening.
        page = await open_page(learner_headers)
        try:
            ladder = {"A1": "current"}
            while ladder.get("B1") != "current":
                await page.next("state", state="listening")  # also after a reply followed by a level update
                asked = next(level for level, status in ladder.items() if status == "current")
                await page.ws.send_json_to({"type": "answer.text", "text": written_answer(asked)})
                ladder = (await page.next("level"))["ladder"]
            await page.next("state", state="listening")
        finally:
            await page.ws.disconnect()

    updates = [(t, e) for t, e in wire.of("sent", "session.update") if e["session"]["audio"]["output"].get("speed") == 1.0]
    assert len(updates) == 1
    sent_at = updates[0][0]
    # The call that moved the level was made by a response that was still speaking; the update went
    # out after that response ended, and before the next one started.
    last_call = max(t for t, _e in wire.of("read", "response.function_call_arguments.done") if t < sent_at)
    call_response = next(e.response_id for t, e in wire.of("read", "response.function_call_arguments.done")
                         if t == last_call)
    ended = next(t for t, e in wire.of("read", "response.done") if e.response.id == call_response)
    assert ended < sent_at
    assert not [t for t, _e in wire.of("read", "response.created") if ended < t < sent_at]
    assert "cannot_update_speed" not in wire.errors() and page.of("error") == []
    confirmed = [e for t, e in wire.of("read", "session.updated") if t > sent_at]
    assert confirmed and confirmed[0].session.audio.output.speed == 1.0


async def test_the_state_does_not_flip_to_listening_between_a_tool_call_and_the_speech_after_it(
    settings, learner_headers
):
    """A model that stops after the call (the tutor speaks again only after the function output)."""
    async with start_simulator(pace=0.0, probe_shape="call", true_level="B1") as sim:
        settings.PARLA_REALTIME_URL = sim.url
        page = await open_page(learner_headers)
        try:
            for _ in range(3):
                await page.next("state", state="listening")  # the tutor's turn (greeting or reply) is over
                asked = len(page.events)
                await page.ws.send_json_to({"type": "answer.text", "text": "Me gusta mucho leer novelas por la noche."})
                await page.next("level")  # the reply's call, recorded
                await page.next("audio.end")  # the speech that followed its output
                states = [e["state"] for _t, e in page.events[asked:] if e["type"] == "state"]
                assert states == ["tutor_speaking"], states
            # Nor is it the learner's turn just before the greeting.
            first = [e["state"] for _t, e in page.events if e["type"] == "state"][:4]
            assert first == ["ready", "connecting", "tutor_speaking", "listening"]
        finally:
            await page.ws.disconnect()


@pytest.mark.parametrize("shape", ["call", "preamble_call_answer"])
@pytest.mark.parametrize("knob", ["repeat_probe_every", "skip_probe_every", "wrong_language_every"])
async def test_a_tutor_model_that_errs_does_not_break_the_session(settings, learner_headers, wire, shape, knob):
    async with start_simulator(pace=0.0, probe_shape=shape, true_level="B1", **{knob: 1}) as sim:
        settings.PARLA_REALTIME_URL = sim.url
        page = await open_page(learner_headers)
        try:
            await page.next("state", state="listening")
            first_answer = asyncio.get_running_loop().time()
            for _ in range(3):
                await page.ws.send_json_to({"type": "answer.text", "text": "Me gusta mucho leer novelas por la noche."})
                await page.next("state", state="listening")
        finally:
            await page.ws.disconnect()

    calls = [e.call_id for _t, e in wire.of("read", "response.function_call_arguments.done")]
    outputs = [e["item"]["call_id"] for _t, e in wire.of("sent", "conversation.item.create")
               if e["item"]["type"] == "function_call_output"]
    assert sorted(outputs) == sorted(calls) and len(set(outputs)) == len(outputs)  # each call answered once
    assert len(calls) == {"repeat_probe_every": 6, "skip_probe_every": 0, "wrong_language_every": 3}[knob]
    # One reply per answer: plus the one after the outputs when the model stops at its calls.
    per_answer = 2 if shape == "call" and knob != "skip_probe_every" else 1
    assert len([t for t, _e in wire.of("read", "response.created") if t > first_answer]) == 3 * per_answer
    assert wire.errors() == [] and page.of("error") == []


@pytest.mark.parametrize("model, sent", [("gpt-realtime-2.1", {"effort": "medium"}), ("gpt-realtime-1.5", None)])
async def test_reasoning_effort_goes_only_to_models_that_take_it(settings, learner_headers, wire, model, sent):
    settings.PARLA_REALTIME_MODEL, settings.PARLA_REASONING_EFFORT = model, "medium"
    async with start_simulator(pace=0.0) as sim:
        settings.PARLA_REALTIME_URL = sim.url
        page = await open_page(learner_headers)
        try:
            await page.next("state", state="listening")
        finally:
            await page.ws.disconnect()
    (update,) = [e for _t, e in wire.of("sent", "session.update")]
    assert update["session"].get("reasoning") == sent
    (updated,) = [e for _t, e in wire.of("read", "session.updated")]
    assert (updated.session.reasoning.effort if sent else updated.session.reasoning) == (sent or {}).get("effort")
