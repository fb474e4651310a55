"""Demo mode cannot understand speech: a learner who only speaks gets no level, and is told why.

Through the real ASGI application and consumer, with the simulator as upstream (it has no speech
recognizer: every spoken answer comes without words) and the offline rater. The learner of issue 28
said the same A1 sentence every time, fluently (7.8 s of speech): before, timing alone sustained level
after level and placed them B2, with "accuracy" evidenced by pauses. Timing shows fluency, nothing else.
"""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from assessments.grading.summary import NO_WORDS_SUMMARY
from assessments.models import Assessment, Probe, Turn
from tutor.testing.learners import frames, spoken_answer
from tutor.tests.test_end_to_end import FRAME_GAP
from tutor.testing.realtime_client import start_simulator
from tutor.tests.test_warm_up import answered

pytestmark = pytest.mark.django_db(transaction=True)

ANSWERS = 10


async def test_ten_spoken_answers_without_words_end_without_a_level_and_say_why(
    settings, session_cookie_headers, learner_user
):
    sentence = spoken_answer("B2")  # one sentence, said fluently: the timing of a B2 speaker
    given = 0

    async def speak(communicator):
        nonlocal given
        if given == ANSWERS:
            await communicator.send_json_to({"type": "session.stop"})
            return
        for frame in frames(sentence):
            await communicator.send_to(bytes_data=frame)
            await asyncio.sleep(FRAME_GAP)  # the microphone's pace, sped up within the rate limit
        given += 1

    headers = await sync_to_async(session_cookie_headers)(learner_user)
    async with start_simulator(pace=0, true_level="A1") as sim:
        settings.PARLA_REALTIME_URL = sim.url
        card = (await answered(headers, {"type": "session.start"}, speak))[-1]

    assert given == ANSWERS
    assert card["status"] == "not_rated" and card["level"] is None and card["criteria"] == {}
    assert card["summary"] == NO_WORDS_SUMMARY
    assert "cannot understand speech" in card["summary"] and "Written answers can be placed" in card["summary"]
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


def test_the_tutor_page_says_so_before_the_learner_speaks(client, learner_user, settings):
    client.force_login(learner_user)
    settings.PARLA_DEMO_MODE = True
    assert "This demo cannot understand speech" in client.get("/session/").content.decode()
    settings.PARLA_DEMO_MODE = False  # with an API key speech is transcribed: nothing to warn about
    assert "This demo cannot understand speech" not in client.get("/session/").content.decode()


def test_with_a_recognizer_a_session_of_untranscribed_speech_is_not_called_a_demo():
    from assessments.grading import GradeInput
    from assessments.grading.summary import NOT_RATED_SUMMARY, NOT_TRANSCRIBED_SUMMARY, not_rated_summary

    spoken = {"mode": "spoken", "words_known": False, "fluency": {"speaking_ms": 6500}}
    data = GradeInput("es", "en", "A1", None, None, True, "learner_stopped", answer_measures=(spoken,))
    assert not_rated_summary(data) == NO_WORDS_SUMMARY
    assert not_rated_summary(data, recognizer=True) == NOT_TRANSCRIBED_SUMMARY
    written = {"mode": "written", "words_known": True, "fluency": {}}
    assert not_rated_summary(GradeInput("es", "en", "A1", None, None, True, "", answer_measures=(written,)),
                             recognizer=False) == NOT_RATED_SUMMARY
