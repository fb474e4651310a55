"""The runtime's parts without Daphne: the response scheduler against the simulator, the probe
handler and the live snapshot with plain stand-ins."""

import asyncio
import json
import logging

import pytest

from assessments.placement import Placement
from tutor.live import session_snapshot
from tutor.realtime.client import RealtimeClient
from tutor.realtime.logs import bind
from tutor.realtime.relay import SpeechRelay
from tutor.realtime.tasks import OwnedTasks
from tutor.runtime.probes import ProbeHandler
from tutor.runtime.responses import ResponseScheduler
from tutor.testing.loopback import MemoryLearner
from tutor.testing.realtime_client import start_simulator

log = bind(logging.getLogger("tests"), session_id=1)


@pytest.fixture
async def tutor():
    async with start_simulator(pace=0) as sim:
        client = RealtimeClient(sim.url, model="gpt-realtime", validate_sent=True)
        await client.connect()
        learner = MemoryLearner()
        relay = SpeechRelay(learner, role="tutor", voice=lambda: client.tracker.voice)
        client.handler = relay.handle
        tasks = OwnedTasks("test")
        scheduler = ResponseScheduler(
            client=lambda: client,
            learner=learner,
            relay=relay,
            step_timeout=5.0,
            may_respond=lambda: True,
            spawn=tasks.spawn,
            log=log,
        )
        yield scheduler, client, learner
        await tasks.cancel_all()
        await learner.close()
        await client.close()


async def test_two_responses_asked_at_once_go_out_one_after_the_other(tutor):
    scheduler, client, _learner = tutor
    created = []
    done = asyncio.Event()

    async def count(event):
        if event.type == "response.created":
            created.append(event.response.id)
        if event.type == "response.done" and len(created) == 2:
            done.set()

    client.handler = count
    await asyncio.gather(scheduler.create(), scheduler.create())
    async with asyncio.timeout(10):
        await done.wait()
    assert len(set(created)) == 2
    assert "conversation_already_has_active_response" not in client.tracker.error_codes


async def test_an_interrupting_response_cuts_the_active_one_and_flushes_the_browser(tutor):
    scheduler, client, learner = tutor
    await scheduler.create()
    first = await client.wait_for("response.output_audio.delta", 5)
    await scheduler.create(interrupt=True)
    assert client.tracker.responses[first.response_id].status == "cancelled"
    assert [e["type"] for e in learner.events].count("playback.flush") == 1
    assert client.tracker.error_codes == []


class FakeScheduler:
    """Records what the probe handler asks of the response scheduler."""

    def __init__(self, client):
        self.lock = asyncio.Lock()
        self._client = client
        self.outputs = []
        self.responded = 0

    def client(self):
        return self._client

    async def function_output(self, call_id, output):
        self.outputs.append((call_id, output))

    async def respond(self, interrupt=False):
        self.responded += 1


class OpenClient:
    is_open = True

    def __init__(self):
        self.requests = []

    async def request(self, event, expect, timeout):
        self.requests.append(event["session"])


def probe_handler(placement, scheduler, stored, finished):
    async def store(probe, call_id):
        stored.append((probe.level, probe.outcome, call_id))

    async def recorded():
        pass

    async def on_finished():
        finished.append(True)

    return ProbeHandler(
        placement=placement,
        responses=scheduler,
        store=store,
        on_recorded=recorded,
        on_finished=on_finished,
        level_session=lambda: {"type": "realtime", "instructions": f"level {placement.current_level}"},
        step_timeout=1.0,
        log=log,
    )


async def test_probe_calls_move_the_ladder_answer_the_call_and_finish_placement():
    client = OpenClient()
    scheduler = FakeScheduler(client)
    placement, stored, finished = Placement(), [], []
    handler = probe_handler(placement, scheduler, stored, finished)

    await handler.handle(client, "call_1", "record_probe", json.dumps({"level": "A1", "outcome": "sustained"}))
    await handler.handle(client, "call_2", "record_probe", json.dumps({"level": "A1", "outcome": "sustained"}))
    assert stored == [("A1", "sustained", "call_1"), ("A1", "sustained", "call_2")]
    assert scheduler.outputs[-1] == ("call_2", {"ok": True, "current_level": "A2"})
    assert client.requests == [{"type": "realtime", "instructions": "level A2"}]  # the level changed once
    assert scheduler.responded == 2

    await handler.handle(client, "call_3", "record_probe", "{not json")
    assert scheduler.outputs[-1][0] == "call_3" and scheduler.outputs[-1][1]["ok"] is False
    assert len(stored) == 2

    for call in ("call_4", "call_5"):
        await handler.handle(client, call, "record_probe", json.dumps({"level": "A2", "outcome": "breakdown"}))
    assert finished == [True] and placement.finished
    assert [call for call, _ in scheduler.outputs] == ["call_1", "call_2", "call_3", "call_4"]  # no answer after the end


async def test_a_probe_from_an_expired_session_is_stored_but_not_answered():
    current, expired = OpenClient(), OpenClient()
    scheduler = FakeScheduler(current)
    stored = []
    handler = probe_handler(Placement(), scheduler, stored, [])
    await handler.handle(expired, "call_1", "record_probe", json.dumps({"level": "A1", "outcome": "sustained"}))
    assert stored == [("A1", "sustained", "call_1")]
    assert scheduler.outputs == [] and scheduler.responded == 0


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
