"""The teachers' live view: snapshots of running sessions reach teachers, and only teachers."""

import asyncio
import os

import pytest
from channels.testing import WebsocketCommunicator
from django.urls import reverse

from config.asgi import application
from tutor.live import announce

pytestmark = pytest.mark.django_db(transaction=True)


def snapshot(**changes):
    return {"session_id": 7, "learner": "ana", "language": "es", "state": "listening", "level": "A2",
            "ladder": {"A1": "sustained", "A2": "current"}, "probes": 2, "assessment": None, **changes}


async def connected_code(communicator):
    connected, _ = await communicator.connect()
    assert connected
    if await communicator.receive_nothing(timeout=0.2):
        return None
    return (await communicator.receive_output())["code"]


async def test_teacher_receives_snapshots_of_running_sessions(session_cookie_headers, teacher_user):
    headers = await database_headers(session_cookie_headers, teacher_user)
    teacher = WebsocketCommunicator(application, "/ws/teacher/live/", headers=headers)
    try:
        assert await connected_code(teacher) is None
        await announce(snapshot(state="assessing", assessment={"id": 3, "level": "A1", "status": "pending"}))
        message = await teacher.receive_json_from()
        assert message["type"] == "session"
        assert message["session"]["state"] == "assessing" and message["session"]["assessment"]["level"] == "A1"
        assert message["session"]["at"]
        await teacher.send_json_to({"type": "anything"})
        assert (await teacher.receive_json_from())["code"] == "read_only"
    finally:
        await teacher.disconnect()


async def test_learners_and_anonymous_cannot_watch(session_cookie_headers, learner_user):
    for user, code in ((learner_user, 4403), (None, 4401)):
        headers = await database_headers(session_cookie_headers, user)
        communicator = WebsocketCommunicator(application, "/ws/teacher/live/", headers=headers)
        try:
            assert await connected_code(communicator) == code
        finally:
            await communicator.disconnect()


def test_live_page_is_for_teachers(client, learner_user, teacher_user):
    client.force_login(learner_user)
    assert client.get(reverse("tutor:teacher_live")).status_code == 403
    client.force_login(teacher_user)
    page = client.get(reverse("tutor:teacher_live"))
    assert page.status_code == 200 and 'data-ws-path="/ws/teacher/live/"' in page.content.decode()


async def database_headers(session_cookie_headers, user):
    from asgiref.sync import sync_to_async

    return await sync_to_async(session_cookie_headers)(user)


def test_snapshots_carry_the_language_name_and_the_admin_pages():
    from tutor.live import for_teachers

    shown = for_teachers(snapshot(language="fr", assessment={"id": 3, "level": "B1", "status": "graded", "partial": False}))
    assert shown["language_name"] == "French"
    assert shown["assessment"]["url"] == reverse("admin:assessments_assessment_change", args=[3])
    assert shown["session_url"] == reverse("admin:assessments_tutorsession_change", args=[7])
    assert for_teachers(snapshot())["assessment"] is None


def test_live_page_is_linked_from_the_admin_index(client, teacher_user):
    client.force_login(teacher_user)
    assert f'href="{reverse("tutor:teacher_live")}"' in client.get(reverse("admin:index")).content.decode()


async def test_with_one_process_a_snapshot_is_only_sent_while_a_teacher_watches(
    settings, session_cookie_headers, teacher_user
):
    """The in-memory layer (no REDIS_URL): sessions announce several times a turn, so with nobody in
    the teachers' group nothing is built or sent; a teacher who connects gets the next snapshot, and
    after the last one leaves the sending stops again."""
    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    sent = []
    group_send = layer.group_send

    async def counting_group_send(group, message):
        sent.append(message["session"]["state"])
        await group_send(group, message)

    layer.group_send = counting_group_send
    await announce(snapshot(state="listening"))
    assert sent == []

    headers = await database_headers(session_cookie_headers, teacher_user)
    teacher = WebsocketCommunicator(application, "/ws/teacher/live/", headers=headers)
    try:
        assert await connected_code(teacher) is None
        await announce(snapshot(state="speaking"))
        assert (await teacher.receive_json_from())["session"]["state"] == "speaking"
    finally:
        await teacher.disconnect()
    await announce(snapshot(state="assessing"))
    assert sent == ["speaking"]


async def test_over_redis_a_snapshot_reaches_a_teacher_of_another_process(settings):
    """With Redis the teachers may be connected to another process, whose group members this process
    cannot see: every snapshot is sent, and one reaches a channel added to the group elsewhere."""
    from channels.layers import get_channel_layer

    from config.channel_layer import redis_channel_layer
    from config.tests.test_services import require_service
    from tutor.live import TEACHERS_GROUP

    require_service("REDIS_URL", "redis")
    settings.CHANNEL_LAYERS = {"default": redis_channel_layer(os.environ["REDIS_URL"], f"parla-test-live-{os.getpid()}")}
    layer = get_channel_layer()
    other_process = type(layer)(**settings.CHANNEL_LAYERS["default"]["CONFIG"])  # the same Redis, its own client
    teacher = await other_process.new_channel()
    await other_process.group_add(TEACHERS_GROUP, teacher)
    try:
        await announce(snapshot(state="speaking"))
        message = await asyncio.wait_for(other_process.receive(teacher), 5)
        assert message["type"] == "live.session" and message["session"]["state"] == "speaking"
    finally:
        await other_process.group_discard(TEACHERS_GROUP, teacher)
        await other_process.flush()
        await layer.flush()
