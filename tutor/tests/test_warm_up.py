"""The warm-up: the self-assessment sent with session.start decides where placement starts, through
the real consumer with the simulator as the tutor (a simulated learner of a known true level)."""

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from assessments.models import Assessment, Probe, TutorSession
from config.asgi import application
from tutor.testing.realtime_client import start_simulator
from tutor.testing.learners import written_answer
from tutor.tests.test_not_rated import events_until

pytestmark = pytest.mark.django_db(transaction=True)


async def placed(headers, self_assessment, true_level, settings):
    """A whole session answered in writing; returns (the final card, the probes' levels in order).

    Placement follows the independent rater, which judges a written answer by its text: the learner
    stand-in writes answers of its true level (from the rater's reference set), as a real one would."""
    answer = written_answer(true_level)
    start = {"type": "session.start"}
    if self_assessment is not None:
        start["self_assessment"] = self_assessment
    async with start_simulator(pace=0, true_level=true_level) as sim:
        settings.PARLA_REALTIME_URL = sim.url
        events = await answered_in_writing(headers, start, lambda: answer)
    card = events[-1]
    probes = [p.level async for p in Probe.objects.order_by("created_at", "pk")]
    return card, probes


async def test_a_b2_writer_who_says_so_reaches_the_ceiling_in_four_answers(
    settings, session_cookie_headers, learner_user
):
    # B2, not C1 as before: the written rule derived from learner texts needs more words for C1 than
    # one answer holds (tutor.testing.learners.WRITTEN_LEVELS); the warm-up's logic is the same.
    card, probes = await placed(await sync_to_async(session_cookie_headers)(learner_user), "B2", "B2", settings)
    assert card["level"] == "B2" and card["status"] == "delivered"
    assert probes == ["B2", "B2", "C1", "C1"]
    session = await TutorSession.objects.aget()
    assert (session.self_assessment, session.start_level) == ("B2", "B2")


async def test_a_learner_who_over_rates_themself_is_stepped_down_and_placed_correctly(
    settings, session_cookie_headers, learner_user
):
    card, probes = await placed(await sync_to_async(session_cookie_headers)(learner_user), "C1", "A2", settings)
    assert card["level"] == "A2"
    assert probes == ["C1", "C1", "B2", "B1", "A2", "A2"]
    assessment = await Assessment.objects.aget()
    assert assessment.level == "A2" and not assessment.partial


async def test_a_bad_self_assessment_is_refused(settings, session_cookie_headers, learner_user):
    communicator = WebsocketCommunicator(
        application, "/ws/tutor/", headers=await sync_to_async(session_cookie_headers)(learner_user)
    )
    assert (await communicator.connect())[0]
    try:
        await communicator.receive_json_from()
        await communicator.send_to(text_data=json.dumps({"type": "session.start", "self_assessment": "fluent"}))
        error = await communicator.receive_json_from()
        assert error["type"] == "error" and error["code"] == "bad_field"
    finally:
        await communicator.disconnect()


async def answered_in_writing(headers, start: dict, next_answer) -> list[dict]:
    """Drives /ws/tutor/ as the page does and answers every tutor turn in writing with `next_answer()`
    (`answered`); returns every JSON event the page was sent (the card last)."""

    async def write(communicator):
        await communicator.send_json_to({"type": "answer.text", "text": next_answer()})

    return await answered(headers, start, write)


async def answered(headers, start: dict, answer) -> list[dict]:
    """Drives /ws/tutor/ as the page does (reports each tutor item played, answers each flush) and
    answers every tutor turn with `answer(communicator)`, until the assessment is delivered (or the
    session ends not rated); returns every JSON event the page was sent (the card last)."""
    communicator = WebsocketCommunicator(application, "/ws/tutor/", headers=headers)
    assert (await communicator.connect())[0]
    events = []
    try:
        await communicator.receive_json_from()  # ready
        await communicator.send_json_to(start)
        heard = False  # a tutor item played since the learner's last answer
        while True:
            seen = await events_until(communicator, lambda e: (
                e["type"] in ("audio.end", "playback.flush") or e["type"] == "state" and e["state"] == "listening"
                or e["type"] == "assessment" and e["status"] in ("delivered", "delivery_failed", "not_rated")),
                timeout=20)
            events += seen
            event = seen[-1]
            if event["type"] == "playback.flush":
                await communicator.send_json_to({"type": "playback.flushed", "request_id": event["request_id"],
                                                 "item_id": None, "played_ms": 0})
            elif event["type"] == "audio.end":
                # Like the page: the item has been played (the server takes what was heard from this).
                await communicator.send_json_to({"type": "playback.report", "item_id": event["item_id"],
                                                 "kind": "end", "played_ms": 0})
                heard = True
            elif event["type"] == "state":
                if heard:  # the tutor's turn is over (its preamble, call and question): answer it
                    await answer(communicator)
                    heard = False
            else:
                return events
    finally:
        await communicator.disconnect()
