"""No rating without evidence: sessions that end before enough answers are `not_rated`, off the chart.

Each way a learner's session can end with no answer (Stop, reload, a second tab, logout, the upstream
lost) goes through the real ASGI application and consumer with the simulator as upstream; the history
page is then read through the Django test client, as the learner would see it.
"""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django.urls import reverse

from assessments.grading.summary import NOT_RATED_SUMMARY
from assessments.models import Assessment, TutorSession
from config.asgi import application
from tutor.testing.realtime_client import start_simulator

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def upstream(settings):
    async with start_simulator(pace=0) as sim:
        settings.PARLA_REALTIME_URL = sim.url
        yield sim


async def events_until(communicator, done, timeout=10):
    """JSON events until `done(event)` is true (audio frames passed over); returns them all."""
    seen = []
    async with asyncio.timeout(timeout):
        while True:
            output = await communicator.receive_output(timeout=timeout)
            if output["type"] == "websocket.close":
                seen.append({"type": "close", "code": output.get("code")})
                if done(seen[-1]):
                    return seen
                raise AssertionError(f"closed with {output.get('code')}: {seen}")
            if output.get("text"):
                seen.append(json.loads(output["text"]))
                if done(seen[-1]):
                    return seen


async def started(headers, until="audio.start"):
    """A learner's tutor socket after session.start, once the tutor has begun its greeting."""
    communicator = WebsocketCommunicator(application, "/ws/tutor/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from())["state"] == "ready"
    await communicator.send_json_to({"type": "session.start"})
    await events_until(communicator, lambda e: e["type"] == until)  # the tutor speaks: no answer yet
    return communicator


async def assessment_of(user):
    """The one assessment of `user`'s one session (polled: the socket's teardown writes it)."""
    async with asyncio.timeout(5):
        while not await Assessment.objects.filter(learner__user=user).aexists():
            await asyncio.sleep(0.02)
    return await Assessment.objects.select_related("session").aget(learner__user=user)


def check_not_rated(assessment, end_reason):
    assert assessment.status == Assessment.Status.NOT_RATED
    assert assessment.level == ""  # no level at all, never a default one
    assert assessment.criteria == {} and assessment.grader == ""
    assert assessment.summary == NOT_RATED_SUMMARY
    assert assessment.session.end_reason == end_reason and assessment.session.ended_at is not None


def history_as(user):
    client = Client()
    client.force_login(user)
    return client.get(reverse("assessments:history"))


def check_off_the_chart(user):
    page = history_as(user)
    assert page.status_code == 200
    assert page.context["chart"].points == ()
    html = page.content.decode()
    assert 'data-rating="not_rated"' in html and "level-chart" not in html
    assert "Your strength" not in html


async def test_stop_before_any_answer_ends_not_rated_and_the_learner_is_told_kindly(
    upstream, session_cookie_headers, learner_user
):
    communicator = await started(await sync_to_async(session_cookie_headers)(learner_user))
    try:
        await communicator.send_json_to({"type": "session.stop"})
        seen = await events_until(communicator, lambda e: e.get("state") == "ended")
    finally:
        await communicator.disconnect()
    cards = [e for e in seen if e["type"] == "assessment"]
    assert len(cards) == 1
    card = cards[0]
    assert card["status"] == "not_rated" and card["level"] is None and card["criteria"] == {}
    assert "not enough speaking" in card["summary"] and "strength" not in card["summary"]
    assert [e for e in seen if e["type"] == "error"] == []
    assert "assessing" not in [e.get("state") for e in seen]  # nothing to grade, nothing spoken
    check_not_rated(await assessment_of(learner_user), "learner_stopped")
    await sync_to_async(check_off_the_chart)(learner_user)


async def test_reload_before_any_answer_ends_not_rated(upstream, session_cookie_headers, learner_user):
    communicator = await started(await sync_to_async(session_cookie_headers)(learner_user))
    await communicator.disconnect()  # the page reloads: its socket goes away
    check_not_rated(await assessment_of(learner_user), "learner_left")
    await sync_to_async(check_off_the_chart)(learner_user)


async def test_start_in_a_second_tab_before_any_answer_ends_the_first_not_rated(upstream, session_cookie_headers, learner_user):
    headers = await sync_to_async(session_cookie_headers)(learner_user)
    first = await started(headers)
    second = WebsocketCommunicator(application, "/ws/tutor/", headers=headers)
    try:
        assert (await second.connect())[0]
        ready = await second.receive_json_from()
        assert ready["state"] == "ready" and ready["running_elsewhere"] is True  # the page says so
        # Opening the page ends nothing: the first window's session goes on (its tutor still speaks).
        meanwhile = []
        while not await first.receive_nothing(timeout=0.3):
            meanwhile.append(await first.receive_output())
        assert all(m["type"] == "websocket.send" for m in meanwhile)
        assert not [m for m in meanwhile if m.get("text") and json.loads(m["text"])["type"] == "error"]
        await second.send_json_to({"type": "session.start"})  # Start does
        seen = await events_until(first, lambda e: e["type"] == "close")
        assert seen[-1]["code"] == 4409
        assert [e["code"] for e in seen if e["type"] == "error"] == ["superseded"]
    finally:
        await first.disconnect()
        await second.disconnect()
    first_session = await TutorSession.objects.filter(learner__user=learner_user).order_by("started_at").afirst()
    async with asyncio.timeout(5):
        while not await Assessment.objects.filter(session=first_session).aexists():
            await asyncio.sleep(0.02)
    check_not_rated(await Assessment.objects.select_related("session").aget(session=first_session), "learner_left")


async def test_logout_before_any_answer_ends_the_session_not_rated(upstream, session_cookie_headers, learner_user):
    headers = await sync_to_async(session_cookie_headers)(learner_user)
    cookie = dict(headers)[b"cookie"].decode().split("=", 1)[1]
    communicator = await started(headers)

    def log_out():  # the header's log-out button, in this tab or another one, with the same session
        client = Client()
        client.cookies[settings.SESSION_COOKIE_NAME] = cookie
        assert client.post(reverse("logout")).status_code == 302

    try:
        await sync_to_async(log_out)()
        seen = await events_until(communicator, lambda e: e["type"] == "close")
    finally:
        await communicator.disconnect()
    assert seen[-1]["code"] == 4401  # logged out: this socket may not go on
    assert [e["code"] for e in seen if e["type"] == "error"] == ["logged_out"]
    check_not_rated(await assessment_of(learner_user), "learner_left")
    await sync_to_async(check_off_the_chart)(learner_user)


async def test_upstream_lost_before_any_answer_ends_not_rated(settings, session_cookie_headers, learner_user):
    async with start_simulator(pace=0) as sim:
        # The connection drops in the middle of the tutor's greeting (after 6 server events).
        settings.PARLA_REALTIME_URL = f"{sim.url}?drop_after_events=6"
        communicator = await started(await sync_to_async(session_cookie_headers)(learner_user), until="level")
        try:
            seen = await events_until(communicator, lambda e: e.get("state") == "ended")
        finally:
            await communicator.disconnect()
    card = next(e for e in seen if e["type"] == "assessment")
    assert card["status"] == "not_rated" and card["level"] is None
    check_not_rated(await assessment_of(learner_user), "upstream_error")
    await sync_to_async(check_off_the_chart)(learner_user)
