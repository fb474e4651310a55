"""/ws/tutor/ admits logged-in learners only, from allowed origins (config.asgi.application)."""

import pytest
from channels.testing import WebsocketCommunicator

from config.asgi import application
from tutor.realtime.wire import CLOSE_FORBIDDEN, CLOSE_NOT_AUTHENTICATED

pytestmark = pytest.mark.django_db(transaction=True)  # the consumer reads users from another thread


@pytest.fixture
def anonymous_headers(session_cookie_headers):
    return session_cookie_headers()


@pytest.fixture
def learner_headers(session_cookie_headers, learner_user):
    return session_cookie_headers(learner_user)


@pytest.fixture
def teacher_headers(session_cookie_headers, teacher_user):
    return session_cookie_headers(teacher_user)


def with_origin(headers, origin):
    return [(k, v) for k, v in headers if k != b"origin"] + [(b"origin", origin.encode())]


async def closed_with(communicator) -> int | None:
    """Connect; the close code the consumer sent right after accepting, or None if it stayed open."""
    connected, _ = await communicator.connect()
    assert connected, "the handshake should complete so the close code reaches the browser"
    if await communicator.receive_nothing(timeout=0.2):
        return None
    message = await communicator.receive_output()
    return message["code"] if message["type"] == "websocket.close" else None


async def test_anonymous_is_refused_with_4401(anonymous_headers):
    communicator = WebsocketCommunicator(application, "/ws/tutor/", headers=anonymous_headers)
    try:
        assert await closed_with(communicator) == CLOSE_NOT_AUTHENTICATED == 4401
    finally:
        await communicator.disconnect()


async def test_teacher_without_learner_profile_is_refused_with_4403(teacher_headers):
    communicator = WebsocketCommunicator(application, "/ws/tutor/", headers=teacher_headers)
    try:
        assert await closed_with(communicator) == CLOSE_FORBIDDEN == 4403
    finally:
        await communicator.disconnect()


async def test_logged_in_learner_is_accepted(learner_headers):
    communicator = WebsocketCommunicator(application, "/ws/tutor/", headers=learner_headers)
    try:
        assert await closed_with(communicator) is None
    finally:
        await communicator.disconnect()


@pytest.mark.parametrize("origin", ["http://evil.example", "https://127.0.0.1.evil.example"])
async def test_foreign_origin_is_refused_before_the_handshake(learner_headers, origin):
    communicator = WebsocketCommunicator(application, "/ws/tutor/", headers=with_origin(learner_headers, origin))
    try:
        connected, code = await communicator.connect()
        # Denied before accept: the server answers the handshake with HTTP 403.
        assert not connected
        assert code not in (CLOSE_NOT_AUTHENTICATED, CLOSE_FORBIDDEN)
    finally:
        await communicator.disconnect()


def test_learner_for(learner_user, teacher_user):
    from django.contrib.auth.models import AnonymousUser

    from assessments.roles import learner_for

    assert learner_for(learner_user) == learner_user.learner
    assert learner_for(teacher_user) is None
    assert learner_for(AnonymousUser()) is None
    assert learner_for(None) is None
