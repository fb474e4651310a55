"""Health and the drain of a live server process (tutor/health.py, tutor/drain.py): the production
server (Daphne, the image's CMD), and the drain under Uvicorn too (`python -m tutor.serve`).

Readiness says why a process should take no learner (capacity, the database, the channel layer,
draining); liveness only that it answers. On SIGTERM a process is not ready within a second, closes
idle sockets and refuses new ones with 4012, lets the running placement go on to PARLA_DRAIN_SECONDS,
then ends it with what is known and delivers its assessment, closes its upstream sessions and exits.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest
import websockets

from assessments.models import Assessment, TutorSession
from tutor.realtime.wire import CLOSE_SERVICE_RESTART
from tutor.testing.learners import written_answer
from tutor.tests.live import ThreadedSimulator, daphne_server, free_port, production_server
from tutor.tests.ops_support import http_get
from tutor.tests.test_end_to_end import PagePlayback, login_cookie, next_json, tutor_socket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def simulator():
    with ThreadedSimulator(pace=0.0, seed=5, audio_ms_per_response=300) as sim:
        yield sim


async def learner_who_stops_answering(base_url: str, cookie: str, answers: int, silent: asyncio.Event) -> dict:
    """Starts a session, answers `answers` times in writing (an A1 learner), then listens without
    answering (`silent` is set), playing and reporting what it hears like the page, until its
    assessment is delivered or fails and the socket closes. Returns what it saw."""
    seen = {"events": [], "close_code": None}
    async with tutor_socket(base_url, cookie) as ws:
        page = PagePlayback(ws)
        given = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                got = await page.recv(deadline - time.monotonic())  # plays, reports, answers the flush
            except websockets.ConnectionClosed:  # the server closed the socket
                break
            if not isinstance(got, dict):
                continue
            event = got
            seen["events"].append(event)
            if event["type"] == "state" and event["state"] == "ready":
                await ws.send(json.dumps({"type": "session.start"}))
            elif event["type"] == "state" and event["state"] == "listening":
                if given < answers:
                    given += 1
                    await ws.send(json.dumps({"type": "answer.text", "text": written_answer("A1")}))
                else:
                    silent.set()
        await asyncio.wait_for(ws.wait_closed(), 30)
        seen["close_code"] = ws.close_code
    return seen


async def close_code_of_new_connection(base_url: str, cookie: str) -> int:
    async with tutor_socket(base_url, cookie) as ws:
        await asyncio.wait_for(ws.wait_closed(), 5)
        return ws.close_code


async def readiness_after_sigterm(base_url: str, process) -> tuple[float, str]:
    """SIGTERM `process`; (seconds until /readyz answered 503, its body)."""
    process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    while True:
        status, body = await asyncio.to_thread(http_get, base_url + "/readyz", 2)
        if status == 503:
            return time.monotonic() - sent, body
        assert time.monotonic() - sent < 5, (status, body)


def test_readiness_says_why_and_liveness_only_answers(simulator, make_user):
    learner = login_cookie(make_user("fills-it", learner=True))

    async def scenario(base_url):
        assert await asyncio.to_thread(http_get, base_url + "/readyz") == (200, "ready\n")
        silent = asyncio.Event()
        session = asyncio.create_task(learner_who_stops_answering(base_url, learner, 0, silent))
        await asyncio.wait_for(silent.wait(), 30)
        full = await asyncio.to_thread(http_get, base_url + "/readyz")
        live = await asyncio.to_thread(http_get, base_url + "/healthz")
        session.cancel()
        await asyncio.gather(session, return_exceptions=True)
        return full, live

    with production_server(realtime_url=simulator.url, redis_url=None,
                       extra_env={"PARLA_MAX_SESSIONS_PER_PROCESS": "1"}) as base_url:
        full, live = asyncio.run(scenario(base_url))
    assert full == (503, "not ready: at capacity (1 of 1 sessions)\n")
    assert live == (200, "ok\n")


def test_unreachable_database_and_channel_layer_make_it_not_ready_but_alive(simulator):
    closed = free_port()  # nothing listens there
    with production_server(realtime_url=simulator.url, redis_url=f"redis://127.0.0.1:{closed}/0",
                       extra_env={"DATABASE_URL": f"postgres://postgres@127.0.0.1:{closed}/parla"}) as base_url:
        status, body = http_get(base_url + "/readyz", timeout=10)
        assert http_get(base_url + "/healthz") == (200, "ok\n")
    assert status == 503
    assert body.startswith("not ready: database unreachable (")
    assert "; channel layer unreachable (" in body


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_sigterm_drains_delivers_the_running_placement_and_exits(simulator, make_user, server):
    simulator.set_knobs(true_level="A1")
    running = make_user("mid-placement", learner=True)
    running_cookie = login_cookie(running)
    idle_cookie = login_cookie(make_user("not-started", learner=True))
    late_cookie = login_cookie(make_user("too-late", learner=True))

    async def scenario(base_url, process):
        silent = asyncio.Event()
        session = asyncio.create_task(learner_who_stops_answering(base_url, running_cookie, 2, silent))
        idle = await tutor_socket(base_url, idle_cookie).__aenter__()
        assert (await next_json(idle))["state"] == "ready"
        await asyncio.wait_for(silent.wait(), 30)  # two answers rated; the learner now only listens
        took, body = await readiness_after_sigterm(base_url, process)
        await asyncio.wait_for(idle.wait_closed(), 5)  # an idle socket is told to go elsewhere at once
        late = await close_code_of_new_connection(base_url, late_cookie)
        assert not session.done()  # the placement goes on during the drain
        return took, body, idle.close_code, late, await session

    with daphne_server(realtime_url=simulator.url, redis_url=None, extra_env={"PARLA_DRAIN_SECONDS": "2"}, server=server) as base_url:
        process = base_url.process
        took, body, idle_code, late_code, seen = asyncio.run(scenario(base_url, process))
        exit_code = process.wait(timeout=30)  # it exits by itself once drained
        open_upstream = simulator.wait_all_closed(5)

    assert took < 1.0 and body == "not ready: draining\n"
    assert idle_code == CLOSE_SERVICE_RESTART and late_code == CLOSE_SERVICE_RESTART
    cards = [e for e in seen["events"] if e["type"] == "assessment"]
    assert cards and cards[-1]["status"] == "delivered" and cards[-1]["level"] == "A1", cards
    assert not [e for e in seen["events"] if e["type"] == "error"]
    assert seen["close_code"] == CLOSE_SERVICE_RESTART  # closed after the delivery, at the drain's end
    assert exit_code == 0 and open_upstream == 0
    session = TutorSession.objects.get(learner__user=running)
    assert session.end_reason == "server_drain"
    assessment = Assessment.objects.get(learner__user=running)
    assert assessment.status == Assessment.Status.DELIVERED and assessment.level == "A1" and assessment.partial
