"""TutorConsumer through the real ASGI application: greeting, one window per learner, Stop."""

import json

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from config.asgi import application
from tutor.consumers import learner_group

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def learner_headers(session_cookie_headers, learner_user):
    return session_cookie_headers(learner_user)


async def test_a_learner_connection_is_greeted_with_ready_and_demo_mode(learner_headers):
    communicator = WebsocketCommunicator(application, "/ws/tutor/", headers=learner_headers)
    try:
        connected, _ = await communicator.connect()
        assert connected
        ready = await communicator.receive_json_from()
        assert ready == {"type": "state", "state": "ready", "demo": True, "language": "es", "running_elsewhere": False}
    finally:
        await communicator.disconnect()


async def test_opening_a_second_window_takes_nothing_over(learner_headers):
    """Only Start in a window ends a session running in another (test_not_rated: Start in the second
    window stops the first's session); opening the page does not, and a page without a session is
    left alone by another window's Start."""
    first = WebsocketCommunicator(application, "/ws/tutor/", headers=learner_headers)
    second = WebsocketCommunicator(application, "/ws/tutor/", headers=learner_headers)
    try:
        assert (await first.connect())[0]
        await first.receive_json_from()  # ready
        assert (await second.connect())[0]
        assert (await second.receive_json_from())["state"] == "ready"
        assert await first.receive_nothing(timeout=0.3)  # the first window is not disturbed
    finally:
        await first.disconnect()
        await second.disconnect()


async def test_stop_before_start_is_a_clear_error(learner_headers):
    communicator = WebsocketCommunicator(application, "/ws/tutor/", headers=learner_headers)
    try:
        await communicator.connect()
        await communicator.receive_json_from()
        await communicator.send_to(text_data=json.dumps({"type": "session.stop"}))
        error = await communicator.receive_json_from()
        assert error["code"] == "not_started" and error["message"]
    finally:
        await communicator.disconnect()


async def test_the_learners_messages_cost_no_database_hop_but_channel_layer_messages_still_clean_up(
    learner_headers, learner_user, monkeypatch
):
    """Channels runs close_old_connections in the sync thread before every message; what the learner's
    socket sends (ten microphone frames a second, playback reports) skips it, a channel-layer message
    does not."""
    import channels.consumer

    hops = []
    real = channels.consumer.aclose_old_connections

    async def counted():
        hops.append(1)
        await real()

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)
    communicator = WebsocketCommunicator(application, "/ws/tutor/", headers=learner_headers)
    try:
        await communicator.connect()
        await communicator.receive_json_from()  # ready
        await communicator.send_to(text_data=json.dumps({"type": "session.stop"}))
        assert (await communicator.receive_json_from())["code"] == "not_started"
        assert await communicator.receive_nothing(timeout=0.2)
        before = len(hops)
        for _ in range(20):
            await communicator.send_to(bytes_data=b"\0\0" * 2400)  # before session.start: refused, not_started
        await communicator.send_to(text_data=json.dumps({"type": "session.stop"}))
        replies = []
        while not await communicator.receive_nothing(timeout=0.3):  # every message handled
            replies.append(await communicator.receive_json_from())
        assert replies and {r["code"] for r in replies} == {"not_started"}
        assert len(hops) == before  # neither the frames nor the control message
        await get_channel_layer().group_send(learner_group(await database_sync_to_async(lambda: learner_user.learner.pk)()), {"type": "session.logged_out"})
        assert (await communicator.receive_json_from())["code"] == "logged_out"
        assert len(hops) == before + 1  # the channel-layer message
    finally:
        await communicator.disconnect()


async def test_messages_already_queued_on_the_socket_are_handled_in_one_turn_of_the_event_loop(
    learner_headers, monkeypatch
):
    """A learner's messages waiting in the server's queue are handled in order without an event-loop
    turn each: Channels' dispatch loop alone takes about three turns per message, and a busy server's
    turns are long (the load benchmark measured a second of queueing at 150 learners)."""
    import asyncio

    from tutor.consumers import TutorConsumer

    turns = 0

    async def ticker():
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    handled: list[tuple[int, int]] = []
    real = TutorConsumer.command_playback_report

    async def recorded(self, message):
        handled.append((message["played_ms"], turns))
        await real(self, message)

    monkeypatch.setitem(TutorConsumer.commands, "playback.report", recorded)  # the one table handlers come from
    communicator = WebsocketCommunicator(application, "/ws/tutor/", headers=learner_headers)
    tick = asyncio.create_task(ticker())
    try:
        await communicator.connect()
        await communicator.receive_json_from()  # ready
        for played in range(40):  # queued at once, as a socket's messages are behind a slow turn
            await communicator.send_to(text_data=json.dumps(
                {"type": "playback.report", "item_id": "item_1", "kind": "progress", "played_ms": played}
            ))
        assert await communicator.receive_nothing(timeout=0.3)  # nothing to answer: all handled
        assert [played for played, _turn in handled] == list(range(40))  # each once, in order
        assert handled[-1][1] - handled[0][1] <= 3, handled  # not ~3 turns per message (~120)
    finally:
        tick.cancel()
        await communicator.disconnect()
