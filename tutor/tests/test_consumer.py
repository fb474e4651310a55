"""TutorConsumer through the real ASGI application: greeting, one window per learner, Stop."""

import json

import pytest
from channels.testing import WebsocketCommunicator

from config.asgi import application
from tutor.realtime.wire import CLOSE_SUPERSEDED

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
        assert ready == {"type": "state", "state": "ready", "demo": True, "language": "es"}
    finally:
        await communicator.disconnect()


async def test_a_second_window_of_the_same_learner_supersedes_the_first(learner_headers):
    first = WebsocketCommunicator(application, "/ws/tutor/", headers=learner_headers)
    second = WebsocketCommunicator(application, "/ws/tutor/", headers=learner_headers)
    try:
        assert (await first.connect())[0]
        await first.receive_json_from()  # ready
        assert (await second.connect())[0]
        assert (await second.receive_json_from())["state"] == "ready"
        notice = await first.receive_json_from()
        assert notice["type"] == "error" and notice["code"] == "superseded"
        closed = await first.receive_output()
        assert closed == {"type": "websocket.close", "code": CLOSE_SUPERSEDED}
        assert await second.receive_nothing(timeout=0.2)  # the new window is not disturbed
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


async def test_audio_frames_cost_no_database_hop_but_control_messages_still_clean_up(learner_headers, monkeypatch):
    """Channels runs close_old_connections in the sync thread before every message; a microphone
    frame (ten a second per learner) skips it, a control message does not."""
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
        assert await communicator.receive_nothing(timeout=0.2)  # the connect's channel-layer message handled too
        before = len(hops)
        for _ in range(20):
            await communicator.send_to(bytes_data=b"\0\0" * 2400)  # before session.start: refused, not_started
        await communicator.send_to(text_data=json.dumps({"type": "session.stop"}))
        replies = []
        while not await communicator.receive_nothing(timeout=0.3):  # every message handled
            replies.append(await communicator.receive_json_from())
        assert replies and {r["code"] for r in replies} == {"not_started"}
        assert len(hops) - before == 1  # the control message only
    finally:
        await communicator.disconnect()
