"""The runtime's parts without Daphne: the response scheduler against the simulator and on plain event
sequences, the probe handler and the live snapshot with plain stand-ins."""

import asyncio
import json
import logging
import threading

import pytest
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from assessments.fluency import speech_span
from assessments.placement import Placement
from tutor.live import session_snapshot
from tutor.realtime.audio import BYTES_PER_MS
from tutor.realtime.client import RealtimeClient
from tutor.realtime.logs import bind
from tutor.realtime.relay import SpeechRelay
from tutor.realtime.tasks import OwnedTasks
from tutor.realtime.tracker import ResponseTracker
from assessments.transcript import Transcript
from tutor.runtime.answers import AnswerCollector, TutorOpinion
from tutor.runtime.connection import TutorConnection
from tutor.runtime.phase import SessionPhase
from tutor.runtime.probes import ProbeHandler
from tutor.runtime.responses import ResponseScheduler
from tutor.runtime.judge import INLINE_AUDIO_MS, audio_work
from tutor.testing.loopback import MemoryLearner
from tutor.testing.realtime_client import start_simulator

log = bind(logging.getLogger("tests"), session_id=1)


def connection_of(client, step_timeout=5.0):
    """The tutor's connection around an upstream session the test opened itself."""
    return TutorConnection(phase=SessionPhase(), transcript=Transcript(), log=log, step_timeout=step_timeout, client=client)


@pytest.fixture
async def tutor():
    async with start_simulator(pace=0) as sim:
        client = RealtimeClient(sim.url, model="gpt-realtime", validate_sent=True)
        await client.connect()
        learner = MemoryLearner()
        relay = SpeechRelay(learner, role="tutor", voice=lambda: client.tracker.voice)
        tasks = OwnedTasks("test")
        scheduler = ResponseScheduler(
            connection=connection_of(client),
            phase=SessionPhase(),
            learner=learner,
            relay=relay,
            step_timeout=5.0,
            spawn=tasks.spawn,
            log=log,
        )

        async def handle(event):  # as the runtime does: the scheduler sees every event first
            scheduler.observe(event)
            await relay.handle(event)

        client.handler = handle
        yield scheduler, client, learner
        await tasks.cancel_all()
        await learner.close()
        await client.close()


async def test_two_responses_asked_at_once_go_out_one_after_the_other(tutor):
    scheduler, client, _learner = tutor
    created = []
    done = asyncio.Event()
    observe = client.handler

    async def count(event):
        await observe(event)
        if event.type == "response.created":
            created.append(event.response.id)
        if event.type == "response.done" and len(created) == 2:
            done.set()

    client.handler = count
    # The second is asked while the first is active (asked twice before either starts, the two asks
    # are one reply owed: the scheduler keeps whether a reply is owed, not how many times it was).
    await scheduler.create()
    assert client.tracker.has_active_response
    await scheduler.create()
    async with asyncio.timeout(10):
        await done.wait()
    assert len(set(created)) == 2
    assert "conversation_already_has_active_response" not in client.tracker.error_codes


async def test_an_interrupting_response_cuts_the_active_one_and_flushes_the_browser(tutor):
    scheduler, client, learner = tutor
    await scheduler.create()
    first = await client.wait_for("response.output_audio.delta", 5)
    await scheduler.answer_written()
    assert client.tracker.responses[first.response_id].status == "cancelled"
    assert [e["type"] for e in learner.events].count("playback.flush") == 1
    assert client.tracker.error_codes == []


async def test_each_call_is_answered_once_however_often_it_is_answered(tutor):
    scheduler, client, _learner = tutor
    sent = []
    send = client.send

    async def recording(event):
        sent.append(event)
        return await send(event)

    client.send = recording
    await scheduler.function_output("call_x", {"ok": True})
    await scheduler.function_output("call_x", {"ok": True})
    assert [e["item"]["call_id"] for e in sent if e["type"] == "conversation.item.create"] == ["call_x"]


async def test_a_duplicated_call_is_recorded_once():
    # Setup rewritten for the current ProbeHandler (answers + scheduler): the call is recorded as the
    # tutor's opinion on the open answer; a duplicated delivery is neither recorded nor answered again.
    client = OpenClient()
    scheduler = FakeScheduler(client)
    answers = AnswerCollector()
    answers.written("Me llamo Ana.", "A1")
    judged = []

    async def judge():  # what the session does on a noted call: it closes the answer
        judged.append(answers.close().opinion.call_id)

    handler = ProbeHandler(answers=answers, responses=scheduler, log=log, on_answer=judge)
    arguments = call("A1", "sustained")
    await handler.handle(client, "call_1", "record_probe", arguments)
    answers.written("Soy de Madrid.", "A1")  # the next answer is open when the duplicate arrives
    await handler.handle(client, "call_1", "record_probe", arguments)  # the same event delivered twice
    assert judged == ["call_1"] and answers.current.opinion is None
    assert [call for call, _ in scheduler.outputs] == ["call_1"]


class FakeScheduler:
    """Records what the probe handler asks of the response scheduler."""

    def __init__(self, client):
        self._client = client
        self.connection = connection_of(client)
        self.outputs = []

    async def function_output(self, call_id, output):
        self.outputs.append((call_id, output))

    def update_session(self, session):  # sent by the scheduler between responses
        self._client.requests.append(session)


class OpenClient:
    is_open = True

    def __init__(self):
        self.requests = []

    async def request(self, event, expect, timeout):
        self.requests.append(event["session"])


def probe_handler(answers, scheduler):
    return ProbeHandler(answers=answers, responses=scheduler, log=log)


def call(level, outcome):
    return json.dumps({"level": level, "outcome": outcome, "evidence": "fine"})


async def test_probe_calls_are_a_second_opinion_on_the_open_answer_and_never_rate():
    # Replaces "probe calls move the ladder": placement follows the independent rater now. The tutor's
    # call is kept beside the answer it is about; a repeated call and a call with no answer are ignored;
    # every call is answered and the tutor asked to go on.
    client = OpenClient()
    scheduler = FakeScheduler(client)
    answers = AnswerCollector()
    handler = probe_handler(answers, scheduler)

    await handler.handle(client, "call_0", "record_probe", call("A1", "sustained"))  # no answer yet
    answers.written("Me llamo Ana.", "A1")
    await handler.handle(client, "call_1", "record_probe", call("A1", "sustained"))
    await handler.handle(client, "call_2", "record_probe", call("A1", "breakdown"))  # repeated: ignored
    assert answers.current.opinion == TutorOpinion("A1", "sustained", "fine", "call_1")
    assert scheduler.outputs == [("call_0", {"ok": True}), ("call_1", {"ok": True}), ("call_2", {"ok": True})]
    assert client.requests == []  # no level change from the tutor: placement follows the rater
    await handler.handle(client, "call_1", "record_probe", call("A1", "sustained"))  # the same event again
    assert [call for call, _ in scheduler.outputs] == ["call_0", "call_1", "call_2"]  # each call answered once

    await handler.handle(client, "call_3", "record_probe", "{not json")
    await handler.handle(client, "call_4", "record_probe", call("Z9", "sustained"))
    assert [output["ok"] for _, output in scheduler.outputs[-2:]] == [False, False]


async def test_a_probe_from_an_expired_session_is_noted_but_not_answered():
    current, expired = OpenClient(), OpenClient()
    scheduler = FakeScheduler(current)
    answers = AnswerCollector()
    answers.written("Hola.", "A1")
    handler = probe_handler(answers, scheduler)
    await handler.handle(expired, "call_1", "record_probe", call("A1", "sustained"))
    assert answers.current.opinion.call_id == "call_1"
    assert scheduler.outputs == [] and current.requests == []


def test_the_live_snapshot_shows_the_assessment_once_there_is_one():
    placement = Placement()
    placement.record("A1", "sustained")
    running = session_snapshot(
        session_id=3, learner="ana", language="es", state="listening", placement=placement, assessment_id=None
    )
    assert running["assessment"] is None and running["probes"] == 1 and running["ladder"]["A1"] == "current"
    placement.finish_early("learner_stopped")
    assessed = session_snapshot(
        session_id=3, learner="ana", language="es", state="assessing", placement=placement, assessment_id=9
    )
    assert assessed["assessment"] == {"id": 9, "level": placement.rating, "status": "pending", "partial": True}


async def test_owned_tasks_are_all_cancelled_and_awaited():
    tasks = OwnedTasks("t")
    started = asyncio.Event()

    async def forever():
        started.set()
        await asyncio.Event().wait()

    task = tasks.spawn(forever(), "forever")
    await started.wait()
    assert len(tasks) == 1
    await tasks.cancel_all()
    assert task.cancelled() and len(tasks) == 0


# --- the scheduler's decisions on plain event sequences (a stand-in client; no socket) ------------

_event = TypeAdapter(RealtimeServerEvent).validate_python


class PlainClient:
    """A client whose server events the test writes; it records what the scheduler sends."""

    is_open = True

    def __init__(self):
        self.tracker = ResponseTracker()
        self.sent = []
        self.n = 0

    async def send(self, event):
        self.tracker.sent(event)
        self.sent.append(event["type"])

    async def request(self, event, expect, timeout, tolerate=frozenset()):
        await self.send({**event, "event_id": f"evt_{len(self.sent)}"})

    async def wait_for(self, expect, timeout):
        await asyncio.sleep(timeout)  # no server here: the server's reply never comes
        raise TimeoutError


@pytest.fixture
async def plain():
    client, tasks = PlainClient(), OwnedTasks("plain")
    learner = MemoryLearner()
    scheduler = ResponseScheduler(
        connection=connection_of(client, step_timeout=0.2), phase=SessionPhase(), learner=learner,
        relay=SpeechRelay(learner, role="tutor", voice=lambda: "marin"), step_timeout=0.2, spawn=tasks.spawn, log=log,
    )

    async def feed(type_, **fields):
        event = _event({"type": type_, "event_id": f"event_{client.n}", **fields})
        client.n += 1
        client.tracker.feed(event)
        scheduler.observe(event)
        for _ in range(5):
            await asyncio.sleep(0)  # let a worker the event started send what it sends

    yield scheduler, client, feed
    await tasks.cancel_all()
    await learner.close()


def response(rid, status="in_progress", reason=None):
    body = {"id": rid, "object": "realtime.response", "status": status, "conversation_id": "conv_1", "output": []}
    if reason:
        body["status_details"] = {"type": status, "reason": reason}
    return body


def call_item(iid, call_id):
    return {"id": iid, "type": "function_call", "call_id": call_id, "name": "record_probe", "arguments": "{}"}


async def test_a_reply_that_stopped_at_its_call_is_followed_up_once_its_output_is_sent(plain):
    scheduler, client, feed = plain
    await feed("response.created", response=response("resp_1"))
    await feed("response.output_item.added", response_id="resp_1", output_index=0, item=call_item("item_1", "call_1"))
    await feed("response.done", response=response("resp_1", "completed"))
    assert client.sent == [] and scheduler.tutor_will_speak  # waits for the output; still the tutor's turn
    await scheduler.function_output("call_1", {"ok": True})
    for _ in range(5):
        await asyncio.sleep(0)
    assert client.sent == ["conversation.item.create", "response.create"]


async def test_nothing_is_asked_for_while_the_learner_speaks_and_the_servers_reply_answers_the_turn(plain):
    scheduler, client, feed = plain
    await feed("response.created", response=response("resp_1"))
    await feed("response.output_item.added", response_id="resp_1", output_index=0, item=call_item("item_1", "call_1"))
    await feed("input_audio_buffer.speech_started", audio_start_ms=100, item_id="item_u")
    await feed("response.done", response=response("resp_1", "cancelled", "turn_detected"))
    await scheduler.function_output("call_1", {"ok": True})
    scheduler.want("written answer")  # even an owed reply waits for the learner's turn to end
    await asyncio.sleep(0.05)
    assert client.sent == ["conversation.item.create"]
    await feed("session.updated", session={"type": "realtime", "audio": {"input": {"turn_detection": {
        "type": "server_vad", "create_response": True}}}})
    await feed("input_audio_buffer.committed", item_id="item_u", previous_item_id=None)
    assert client.sent == ["conversation.item.create"]  # the server starts the reply itself
    await feed("response.created", response=response("resp_2"))
    await feed("response.done", response=response("resp_2", "completed"))
    await asyncio.sleep(0.3)  # past the step timeout of the wait for the server's reply
    assert client.sent == ["conversation.item.create"] and not scheduler.tutor_will_speak


async def test_when_the_server_starts_no_reply_to_a_committed_turn_the_tutor_is_asked(plain):
    scheduler, client, feed = plain
    await feed("session.updated", session={"type": "realtime", "audio": {"input": {"turn_detection": {
        "type": "server_vad", "create_response": True}}}})
    await feed("input_audio_buffer.speech_started", audio_start_ms=100, item_id="item_u")
    await feed("input_audio_buffer.committed", item_id="item_u", previous_item_id=None)
    assert client.sent == []
    await asyncio.sleep(0.3)  # the wait for the server's reply (step timeout 0.2 s) ran out
    assert client.sent == ["response.create"]


async def test_a_level_update_waits_for_the_active_response_and_goes_before_the_next(plain):
    scheduler, client, feed = plain
    await feed("response.created", response=response("resp_1"))
    await feed("response.output_item.added", response_id="resp_1", output_index=0, item=call_item("item_1", "call_1"))
    scheduler.update_session({"type": "realtime", "audio": {"output": {"speed": 1.0}}})
    await scheduler.function_output("call_1", {"ok": True})
    await asyncio.sleep(0.05)
    assert client.sent == ["conversation.item.create"]  # the response is still active
    await feed("response.done", response=response("resp_1", "completed"))
    assert client.sent == ["conversation.item.create", "session.update", "response.create"]


async def test_a_reply_that_started_meanwhile_answers_calls_still_waiting_for_their_output(plain):
    """A written answer cut a reply before it spoke after its call; the answer's reply comes first."""
    scheduler, client, feed = plain
    await feed("response.created", response=response("resp_1"))
    await feed("response.output_item.added", response_id="resp_1", output_index=0, item=call_item("item_1", "call_1"))
    await feed("response.done", response=response("resp_1", "cancelled", "client_cancelled"))
    scheduler.want("written answer")
    await asyncio.sleep(0)
    assert client.sent == ["response.create"]
    await feed("response.created", response=response("resp_2"))
    await scheduler.function_output("call_1", {"ok": True})  # stored late (a slow database)
    await feed("response.done", response=response("resp_2", "completed"))
    assert client.sent == ["response.create", "conversation.item.create"]  # no second reply


async def test_a_level_update_goes_out_while_the_learner_speaks_but_no_reply_does(plain):
    """A learner who talks over every reply: between responses is while they speak."""
    scheduler, client, feed = plain
    await feed("input_audio_buffer.speech_started", audio_start_ms=100, item_id="item_u")
    scheduler.want("tool output")
    scheduler.update_session({"type": "realtime", "instructions": "level A2"})
    await asyncio.sleep(0.05)
    assert client.sent == ["session.update"]


def test_a_stored_answer_keeps_its_fluency_but_not_its_audio():
    # Issue 14: a session holds no answer's recording once it is saved (memory per session), while
    # the measures stay, and words that arrive later still give the speech rate.
    import numpy as np

    tone = (np.sin(np.arange(24_000) * 2 * np.pi * 220 / 24_000) * 8000).astype("<i2").tobytes()
    answers = AnswerCollector()
    answers.committed("item_1", "A2")
    for chunk in (tone, bytes(12_000 * 2), tone):  # 1 s of voice, a 0.5 s pause, 1 s of voice
        answers.audio(chunk)
    answer = answers.close()
    audio = answer.audio
    before = answer.fluency()
    assert (before.pauses, before.duration_ms, before.words) == (1, 2500, None)
    assert answer.speech_span() == speech_span(audio)  # its recording, found in the same pass
    answer.release_audio()
    assert answer.audio == b"" and answer.speech_span() == b""
    assert answer.fluency() == before
    answers.transcribed("item_1", "uno dos tres cuatro cinco", "A2")  # the transcription came late
    after = answer.fluency()
    assert (after.duration_ms, after.pauses, after.words, after.words_per_minute) == (2500, 1, 5, 120.0)


def test_a_closed_answers_audio_is_read_once_for_its_measures_and_its_recording(monkeypatch):
    # Issue 14: the levels of an answer's audio (its costly part, on the event loop) are computed once.
    import numpy as np

    from assessments import fluency

    passes = []
    original = fluency.voiced_frames
    monkeypatch.setattr(fluency, "voiced_frames", lambda pcm: passes.append(len(pcm)) or original(pcm))
    tone = (np.sin(np.arange(24_000) * 2 * np.pi * 220 / 24_000) * 8000).astype("<i2").tobytes()
    answers = AnswerCollector()
    answers.committed("item_1", "A2")
    answers.audio(tone)
    answer = answers.close()
    span, measures = answer.speech_span(), answer.fluency()
    assert answer.fluency() == measures and answer.speech_span() == span
    assert passes == [len(tone)]
    assert (measures, span) == (fluency.measure(tone), fluency.speech_span(tone))


def test_before_the_learner_speaks_only_the_preroll_of_the_microphone_is_kept():
    # Issue 14: the page streams the microphone all the time; the seconds the tutor speaks are not the
    # answer's and are not held. Once the learner speaks, the answer's audio is all kept (its pauses too).
    import numpy as np

    frame = 4_800  # 100 ms
    tone = (np.sin(np.arange(frame // 2) * 2 * np.pi * 220 / 24_000) * 8000).astype("<i2").tobytes()
    answers = AnswerCollector(preroll_ms=1_000)
    for _ in range(80):  # 8 s of silence while the tutor speaks
        answers.audio(bytes(frame))
    assert len(answers.audio_so_far()) == 10 * frame  # the last second only
    answers.speech_started()
    for chunk in [tone] * 10 + [bytes(frame)] * 20 + [tone] * 10:  # 1 s voice, a 2 s pause, 1 s voice
        answers.audio(chunk)
    answers.committed("item_1", "A2")
    answer = answers.close()
    assert len(answer.audio) == 50 * frame  # the preroll and everything after the speech began
    measures = answer.fluency()
    assert (measures.duration_ms, measures.pauses, measures.longest_pause_ms) == (4000, 1, 2000)
    for _ in range(30):  # the next answer starts from its preroll again
        answers.audio(bytes(frame))
    assert len(answers.audio_so_far()) == 10 * frame


async def test_work_on_a_learners_audio_stays_on_the_event_loop_unless_the_audio_is_long():
    """Measuring an answer's audio costs less than a thread hop (whose GIL hand-offs stall every
    learner's relay under load); only audio longer than INLINE_AUDIO_MS goes to a thread."""
    loop_thread = threading.get_ident()
    short = bytes(INLINE_AUDIO_MS * BYTES_PER_MS)
    assert await audio_work(short, threading.get_ident) == loop_thread
    assert await audio_work(short + bytes(BYTES_PER_MS), threading.get_ident) != loop_thread
    assert await audio_work(short, len, short) == len(short)  # the function's result, with its arguments
