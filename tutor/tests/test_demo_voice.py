"""Demo mode cannot understand speech: a learner who only speaks gets no level, and is told why.

Through the real ASGI application and consumer, with the simulator as upstream (it has no speech
recognizer: every spoken answer comes without words) and the offline rater. The learner of issue 28
said the same A1 sentence every time, fluently (7.8 s of speech): before, timing alone sustained level
after level and placed them B2, with "accuracy" evidenced by pauses. Timing shows fluency, nothing else.
"""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from assessments.grading.summary import NO_WORDS_SUMMARY
from assessments.models import Assessment, Probe, Turn
from config.asgi import application
from tutor.testing.learners import frames, spoken_answer
from tutor.tests.test_end_to_end import FRAME_GAP
from tutor.testing.realtime_client import start_simulator
from tutor.tests.test_not_rated import events_until

pytestmark = pytest.mark.django_db(transaction=True)

ANSWERS = 10


async def test_ten_spoken_answers_without_words_end_without_a_level_and_say_why(
    settings, session_cookie_headers, learner_user
):
    sentence = spoken_answer("B2")  # one sentence, said fluently: the timing of a B2 speaker
    async with start_simulator(pace=0, true_level="A1") as sim:
        settings.PARLA_REALTIME_URL = sim.url
        headers = await sync_to_async(session_cookie_headers)(learner_user)
        communicator = WebsocketCommunicator(application, "/ws/tutor/", headers=headers)
        assert (await communicator.connect())[0]
        try:
            await communicator.receive_json_from()  # ready
            await communicator.send_json_to({"type": "session.start"})
            answered, heard, levels = 0, False, []
            while True:
                seen = await events_until(communicator, lambda e: (
                    e["type"] in ("audio.end", "playback.flush", "assessment", "level")
                    or e["type"] == "state" and e["state"] == "listening"), timeout=20)
                event = seen[-1]
                if event["type"] == "playback.flush":
                    await communicator.send_json_to({"type": "playback.flushed", "request_id": event["request_id"],
                                                     "item_id": None, "played_ms": 0})
                elif event["type"] == "audio.end":
                    await communicator.send_json_to({"type": "playback.report", "item_id": event["item_id"],
                                                     "kind": "end", "played_ms": 0})
                    heard = True
                elif event["type"] == "level":
                    levels.append(event["ladder"])
                elif event["type"] == "state" and heard:
                    heard = False
                    if answered == ANSWERS:
                        await communicator.send_json_to({"type": "session.stop"})
                        continue
                    for frame in frames(sentence):
                        await communicator.send_to(bytes_data=frame)
                        await asyncio.sleep(FRAME_GAP)  # the microphone's pace, sped up within the rate limit
                    answered += 1
                elif event["type"] == "assessment":
                    card = event
                    break
        finally:
            await communicator.disconnect()

    assert answered == ANSWERS
    assert card["status"] == "not_rated" and card["level"] is None and card["criteria"] == {}
    assert card["summary"] == NO_WORDS_SUMMARY
    assert "cannot understand speech" in card["summary"] and "Written answers can be placed" in card["summary"]
    assert all(ladder["A1"] == "current" for ladder in levels)  # nothing was ever sustained
    assessment = await Assessment.objects.aget()
    assert assessment.status == Assessment.Status.NOT_RATED and assessment.level == ""
    assert assessment.summary == NO_WORDS_SUMMARY
    probes = [p async for p in Probe.objects.all()]
    assert len(probes) >= ANSWERS - 1  # the last answer may end with the session
    assert {p.outcome for p in probes} == {"not_ratable"} and all(p.mode == "spoken" for p in probes)
    # Its fluency is measured and kept, and said to be all that is known.
    assert all(p.measures["basis"] == "audio only" and p.measures["fluency_level"] for p in probes)
    assert all("no level" in p.evidence for p in probes)
    turns = [t async for t in Turn.objects.filter(role="learner")]
    assert len(turns) >= ANSWERS and all(t.text == "" and t.fluency["speaking_ms"] > 5000 for t in turns)
