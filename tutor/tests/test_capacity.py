"""A server process at its configured maximum of sessions refuses new ones, clearly, instead of
slowing everyone (PARLA_MAX_SESSIONS_PER_PROCESS), and takes new ones again once a session ended."""

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from assessments.models import TutorSession
from config.asgi import application
from tutor.realtime import wire
from tutor.runtime import capacity
from tutor.testing.realtime_client import start_simulator

from .test_socket_robustness import next_of_type

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def upstream(settings):
    async with start_simulator(pace=0) as sim:
        settings.PARLA_REALTIME_URL = sim.url
        yield sim


async def connected(headers):
    communicator = WebsocketCommunicator(application, "/ws/tutor/", headers=headers)
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from())["state"] == "ready"
    return communicator


async def test_past_the_maximum_a_new_session_is_refused_with_a_message_and_try_again_later(
    upstream, settings, make_user, session_cookie_headers
):
    settings.PARLA_MAX_SESSIONS_PER_PROCESS = 1
    ana, ben = [await sync_to_async(make_user)(name, learner=True) for name in ("ana", "ben")]
    first = await connected(await sync_to_async(session_cookie_headers)(ana))
    second = await connected(await sync_to_async(session_cookie_headers)(ben))
    try:
        await first.send_json_to({"type": "session.start"})
        await next_of_type(first, "level")  # ana's session runs
        await second.send_json_to({"type": "session.start"})
        assert await second.receive_json_from() == {"type": "state", "state": "ended"}
        refused = await second.receive_json_from()
        assert refused["type"] == "error" and refused["code"] == "at_capacity" and "try again" in refused["message"]
        assert await second.receive_output() == {"type": "websocket.close", "code": wire.CLOSE_TRY_AGAIN_LATER}
        assert not await TutorSession.objects.filter(learner__user=ben).aexists()  # refused, nothing started
        assert len(upstream.connections) == 1

        await first.send_json_to({"type": "session.stop"})
        await first.disconnect()
        assert capacity.sessions.taken == 0  # ana's slot given back with her session
        third = await connected(await sync_to_async(session_cookie_headers)(ben))
        await third.send_json_to({"type": "session.start"})
        await next_of_type(third, "level")  # room again: ben's session starts
        await third.disconnect()
    finally:
        await first.disconnect()
        await second.disconnect()
    assert capacity.sessions.taken == 0


async def test_while_the_event_loop_stalls_a_new_session_is_refused_like_one_past_the_maximum(
    upstream, settings, make_user, session_cookie_headers, caplog, monkeypatch
):
    # The process runs far below its maximum, but its loop spent a third of the last 10 s stalled
    # (the loop watch Daphne runs, fed here with the stalls an overloaded process has).
    import asyncio
    import logging

    from tutor import loopwatch

    settings.PARLA_MAX_SESSIONS_PER_PROCESS = 100
    settings.PARLA_SHED_STALLED_PERCENT = 25
    caplog.set_level(logging.WARNING, logger="tutor.consumers")
    watch = loopwatch.LoopWatch(stall_ms=100)
    now = asyncio.get_running_loop().time()
    for i in range(loopwatch.MIN_RECENT_STALLS):
        watch.record(now - 4.5 + i * 0.5, 330)  # ten stalls of 330 ms in the last 10 s: 33 %
    monkeypatch.setattr(loopwatch, "current", watch)
    ana = await sync_to_async(make_user)("ana", learner=True)
    page = await connected(await sync_to_async(session_cookie_headers)(ana))
    try:
        await page.send_json_to({"type": "session.start"})
        assert await page.receive_json_from() == {"type": "state", "state": "ended"}
        refused = await page.receive_json_from()
        assert refused["type"] == "error" and refused["code"] == "at_capacity"
        assert await page.receive_output() == {"type": "websocket.close", "code": wire.CLOSE_TRY_AGAIN_LATER}
    finally:
        await page.disconnect()
    assert capacity.sessions.taken == 0 and len(upstream.connections) == 0
    (record,) = [r for r in caplog.records if r.getMessage() == "session refused at capacity"]
    assert record.why == "event loop stalled" and record.stalled_percent == 33

    # Once those stalls are over 10 s old (the loop kept up since), sessions start again.
    recovered = loopwatch.LoopWatch(stall_ms=100)
    for i in range(loopwatch.MIN_RECENT_STALLS):
        recovered.record(now - 20 + i * 0.5, 330)
    recovered.record(asyncio.get_running_loop().time(), 1)
    monkeypatch.setattr(loopwatch, "current", recovered)
    page = await connected(await sync_to_async(session_cookie_headers)(ana))
    try:
        await page.send_json_to({"type": "session.start"})
        await next_of_type(page, "level")
    finally:
        await page.disconnect()
    assert capacity.sessions.taken == 0
