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
