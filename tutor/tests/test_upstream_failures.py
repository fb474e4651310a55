"""When the Realtime API says no (issue 12): refusals at connect, failed responses, raw upstream text.

Through the real ASGI application (the consumer), with the bundled simulator as upstream in the shapes
the real API uses (tutor/realtime/simulator/errors.py): an HTTP status at the upgrade, a wrong key
refused after the upgrade (invalid_api_key, close 3000), responses that end `failed`.
"""

import asyncio
import contextlib
import json
from pathlib import Path

import pytest
from channels.testing import WebsocketCommunicator

from assessments.models import Assessment, Probe, TutorSession
from config.asgi import application
from tutor.realtime import failures, wire
from tutor.realtime.client import parse_server_event
from tutor.runtime.session import TutorSessionRuntime
from tutor.testing.realtime_client import start_simulator

pytestmark = pytest.mark.django_db(transaction=True)

# Upstream texts the simulator sends; none may reach the learner.
UPSTREAM_TEXTS = (
    "Incorrect API key", "Country, region", "Rate limit reached", "server had an error", "too many requests",
    "exceeded your current quota", "does not exist or you do not have access",
)


@pytest.fixture
def learner_headers(session_cookie_headers, learner_user):
    return session_cookie_headers(learner_user)


@pytest.fixture
def runtimes(monkeypatch):
    """Every TutorSessionRuntime launched during the test (to check that none of its tasks is left)."""
    launched = []
    launch = TutorSessionRuntime.launch

    def recording(self):
        launched.append(self)
        launch(self)

    monkeypatch.setattr(TutorSessionRuntime, "launch", recording)
    return launched


async def open_socket(headers):
    communicator = WebsocketCommunicator(application, "/ws/tutor/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from())["state"] == "ready"
    return communicator


async def events_until(communicator, done, timeout=20.0) -> list[dict]:
    """JSON events (audio frames skipped) up to and including the first for which `done(event)`."""
    events = []
    async with asyncio.timeout(timeout):
        while True:
            output = await communicator.receive_output(timeout=timeout)
            if output["type"] == "websocket.close":
                raise AssertionError(f"closed with {output.get('code')}; events so far: {events}")
            if output.get("text"):
                events.append(event := json.loads(output["text"]))
                await play_like_the_page(communicator, event)
                if done(event):
                    return events


async def play_like_the_page(communicator, event: dict) -> None:
    """A page that plays each item as soon as it has it: it reports the end of every item and answers
    every flush (the server takes what the learner heard from these reports)."""
    if event["type"] == "audio.end":
        await communicator.send_json_to(
            {"type": "playback.report", "item_id": event["item_id"], "kind": "end", "played_ms": 0}
        )
    elif event["type"] == "playback.flush":
        await communicator.send_json_to(
            {"type": "playback.flushed", "request_id": event["request_id"], "item_id": None, "played_ms": 0}
        )


def is_state(value):
    return lambda event: event["type"] == "state" and event["state"] == value


def assert_no_upstream_text(events):
    text = json.dumps(events)
    assert not [t for t in UPSTREAM_TEXTS if t in text], text


async def until(predicate, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)  # the test polls; protocol code waits for events


async def until_closed(simulator, timeout=5.0):
    await until(lambda: not simulator.connections, timeout)


# --- refusals at connect --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "knobs, api_key, failure",
    [
        ({"refuse_upgrade": 401}, None, failures.AUTH),
        ({"refuse_upgrade": 403}, None, failures.AUTH),
        ({"refuse_upgrade": 429}, None, failures.BUSY),
        ({"refuse_upgrade": 500}, None, failures.BUSY),
        ({"refuse_upgrade": 503}, None, failures.BUSY),
        ({"api_key": "sk-the-right-key"}, "sk-a-wrong-key", failures.AUTH),  # upgrade, invalid_api_key, 3000
    ],
    ids=["http-401", "http-403", "http-429", "http-500", "http-503", "invalid-api-key-3000"],
)
async def test_every_refusal_at_connect_ends_the_session_cleanly_in_parlas_words(
    settings, learner_headers, runtimes, knobs, api_key, failure
):
    async with start_simulator(**knobs) as sim:
        settings.PARLA_REALTIME_URL = sim.url
        settings.OPENAI_API_KEY = api_key or ""
        communicator = await open_socket(learner_headers)
        try:
            await communicator.send_json_to({"type": "session.start"})
            events = await events_until(communicator, is_state("ended"))
            (runtime,) = runtimes
            # Checked while the learner is still connected: the refusal itself ended everything.
            await until(lambda: not runtime._tasks)
            assert not runtime.client.is_open
            await until_closed(sim)
            assert await communicator.receive_nothing(timeout=0.2)
        finally:
            await communicator.disconnect()
    assert [e["state"] for e in events if e["type"] == "state"] == ["connecting", "ended"]
    errors = [e for e in events if e["type"] == "error"]
    assert errors == [{"type": "error", "code": failure.code, "message": failure.message}]
    assert_no_upstream_text(events)
    session = await TutorSession.objects.aget()
    assert session.end_reason == failure.end_reason and session.ended_at is not None
    # Nothing was said: the session is kept as not rated (issue 10), never with a level.
    assessment = await Assessment.objects.aget()
    assert assessment.status == Assessment.Status.NOT_RATED and not assessment.level


async def test_a_refusal_learner_message_is_one_the_readme_lists():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    listed = readme.split("| `error` | `code`, `message` | codes:", 1)[1].split("\n", 1)[0]
    for failure in (failures.AUTH, failures.BUSY, failures.QUOTA, failures.MODEL, failures.ERROR):
        assert f"`{failure.code}`" in listed


async def test_stop_while_connecting_ends_the_session_and_the_tutor_never_greets(settings, learner_headers, runtimes):
    # 800 ms each way: the tutor's session is configured ~2.4 s after the start; Stop comes before.
    async with start_simulator(latency_ms=800) as sim:
        settings.PARLA_REALTIME_URL = sim.url
        communicator = await open_socket(learner_headers)
        try:
            await communicator.send_json_to({"type": "session.start"})
            events = await events_until(communicator, is_state("connecting"))
            await communicator.send_json_to({"type": "session.stop"})
            events += await events_until(communicator, is_state("ended"), timeout=2.0)
            (runtime,) = runtimes
            await until(lambda: not sim.connections)  # the tutor's upstream connection is gone
            later = []
            with contextlib.suppress(TimeoutError):  # nothing more comes: no greeting, no state
                later = await events_until(communicator, lambda e: True, timeout=3.0)
            assert later == []
            assert [t.get_name().split("-")[0] for t in runtime._tasks if t.get_name().startswith(("start", "watch"))] == []
        finally:
            await communicator.disconnect()
    assert [e["state"] for e in events if e["type"] == "state"] == ["connecting", "ended"]
    assert not [e for e in events if e["type"] in ("audio.start", "error")]
    session = await TutorSession.objects.aget()
    assert session.end_reason == "learner_stopped" and session.ended_at is not None
    assessment = await Assessment.objects.aget()  # kept, without a level: nothing was said
    assert assessment.status == Assessment.Status.NOT_RATED and not assessment.level


# --- failed responses -----------------------------------------------------------------------------


async def test_a_rate_limited_response_is_retried_after_the_reset_while_the_learner_is_told(
    settings, learner_headers, runtimes
):
    # The greeting fails twice (rate limit, reset 1.2 s), then succeeds.
    async with start_simulator(fail_responses="rate_limit", fail_for_responses=2, rate_limit_reset_seconds=1.2) as sim:
        settings.PARLA_REALTIME_URL = sim.url
        communicator = await open_socket(learner_headers)
        loop = asyncio.get_running_loop()
        try:
            await communicator.send_json_to({"type": "session.start"})
            events = await events_until(communicator, lambda e: e["type"] == "busy")
            first_busy = loop.time()
            events += await events_until(communicator, lambda e: e["type"] == "audio.start")
            spoke = loop.time()
            events += await events_until(communicator, lambda e: e["type"] == "transcript" and e["final"])
        finally:
            await communicator.disconnect()
    busy = [e for e in events if e["type"] == "busy"]
    assert [b["attempt"] for b in busy] == [1, 2]
    # Each retry waited for the reset rate_limits.updated gave (1.2 s), longer than the backoff.
    assert all(b["retry_in_ms"] >= 1200 for b in busy)
    assert spoke - first_busy >= 2 * 1.2 - 0.3  # both waits happened (the first began before first_busy)
    assert busy[0]["message"] == "The tutor is busy; trying again in 1 s."
    assert [e for e in events if e["type"] == "error"] == []
    assert events[-1]["role"] == "tutor" and events[-1]["text"]  # then the tutor spoke
    assert_no_upstream_text(events)
    session = await TutorSession.objects.aget()
    assert session.end_reason == "learner_left"  # the failures did not end it


async def test_a_rate_limit_that_persists_ends_placement_with_what_is_known(settings, learner_headers, runtimes):
    async with start_simulator(fail_responses="rate_limit", rate_limit_reset_seconds=0.0) as sim:
        settings.PARLA_REALTIME_URL = sim.url
        communicator = await open_socket(learner_headers)
        try:
            await communicator.send_json_to({"type": "session.start"})
            events = await events_until(communicator, is_state("ended"), timeout=30)
        finally:
            await communicator.disconnect()
    busy = [e for e in events if e["type"] == "busy"]
    assert [b["attempt"] for b in busy] == [1, 2, 3, 4]  # RetryPolicy.max_attempts, then it gives up
    assert [b["retry_in_ms"] for b in busy] == [500, 1000, 2000, 4000]  # the backoff, bounded
    error = next(e for e in events if e["type"] == "error")
    assert (error["code"], error["message"]) == (failures.BUSY.code, failures.BUSY.message)
    assert any(e["type"] == "assessment" for e in events)
    assert_no_upstream_text(events)
    session = await TutorSession.objects.aget()
    assert session.end_reason == "upstream_busy"
    assert await Assessment.objects.filter(session=session, partial=True).aexists()


@pytest.mark.parametrize("kind, failure", [("quota", failures.QUOTA), ("model", failures.MODEL)])
async def test_quota_or_model_failure_ends_placement_with_a_clear_message_and_a_stored_assessment(
    settings, learner_headers, runtimes, kind, failure
):
    # Three responses succeed: the greeting, the probe of the first answer, the next question. The
    # second answer's response fails; retrying cannot help, so nothing is retried.
    # (A tutor that makes its call in a response of its own, then speaks in the next: probe_shape "call".)
    async with start_simulator(true_level="B1", fail_responses=kind, fail_after_responses=3, probe_shape="call") as sim:
        settings.PARLA_REALTIME_URL = sim.url
        communicator = await open_socket(learner_headers)
        try:
            await communicator.send_json_to({"type": "session.start"})
            events = await events_until(communicator, lambda e: e["type"] == "audio.end")
            await communicator.send_json_to({"type": "answer.text", "text": "Me llamo Ana y vivo en Madrid."})
            # The next question: the tutor's turn is over (its reply may open with a preamble before the call).
            events += await events_until(communicator, is_state("tutor_speaking"))
            events += await events_until(communicator, is_state("listening"))
            assert sum(e["type"] == "level" for e in events) == 2  # at the start, and the answer's probe
            await communicator.send_json_to({"type": "answer.text", "text": "Trabajo en una biblioteca."})
            events += await events_until(communicator, is_state("ended"))
            (runtime,) = runtimes
            await until(lambda: not runtime._tasks)  # the ended session keeps nothing running
        finally:
            await communicator.disconnect()
    errors = [e for e in events if e["type"] == "error"]
    assert errors[0] == {"type": "error", "code": failure.code, "message": failure.message}
    assert not [e for e in events if e["type"] == "busy"]
    cards = [e for e in events if e["type"] == "assessment"]
    assert cards and cards[-1]["partial"]
    assert_no_upstream_text(events)
    session = await TutorSession.objects.aget()
    assert session.end_reason == failure.end_reason
    assessment = await Assessment.objects.aget(session=session)
    assert assessment.partial and assessment.id == cards[-1]["id"]
    # What was known: both answers, each judged by the rater (it needs no reply from the failing tutor).
    assert await Probe.objects.filter(session=session).acount() == 2


# --- what the learner reads -----------------------------------------------------------------------


async def test_an_upstream_error_reaches_the_learner_in_parlas_words_and_the_log_keeps_its_text(
    settings, learner_headers, runtimes, caplog
):
    async with start_simulator() as sim:
        settings.PARLA_REALTIME_URL = sim.url
        communicator = await open_socket(learner_headers)
        try:
            await communicator.send_json_to({"type": "session.start"})
            await events_until(communicator, lambda e: e["type"] == "level")
            (runtime,) = runtimes
            raw = {"type": "error", "event_id": "event_1", "error": {
                "type": "server_error", "code": None, "message": "The server had an error while processing your request.",
                "param": None, "event_id": None}}
            await runtime.events.handle(parse_server_event(json.dumps(raw)))
            events = await events_until(communicator, lambda e: e["type"] == "error")
        finally:
            await communicator.disconnect()
    assert events[-1] == {"type": "error", "code": "upstream_error", "message": failures.UNCLAIMED_ERROR_MESSAGE}
    assert_no_upstream_text(events)
    assert any("server had an error" in getattr(r, "error_message", "") for r in caplog.records)


# --- microphone audio before session.start ------------------------------------------------------------


async def test_audio_before_session_start_gets_not_started_and_counts_as_a_refusal(learner_headers):
    communicator = await open_socket(learner_headers)
    try:
        await communicator.send_to(bytes_data=b"\x00\x00" * 2400)
        error = await communicator.receive_json_from()
        assert error == {"type": "error", "code": "not_started", "message": "Start the session first."}
        for _ in range(wire.MAX_REFUSED):
            await communicator.send_to(bytes_data=b"\x00\x00" * 2400)
        output = await communicator.receive_output(timeout=5)
        refused = 1
        while output["type"] != "websocket.close":
            assert json.loads(output["text"])["code"] == "not_started"
            refused += 1
            output = await communicator.receive_output(timeout=5)
        assert output["code"] == wire.CLOSE_TOO_MANY and refused == wire.MAX_REFUSED
    finally:
        await communicator.disconnect()
