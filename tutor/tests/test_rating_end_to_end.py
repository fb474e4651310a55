"""The independent rater through a real server, as a learner meets it (demo mode: the simulator
upstream, the offline rater).

- Placement follows the rater, not the tutor's tool: simulated learners of every level a written
  answer can show (A1-B2: tutor.testing.learners) are placed exactly when the simulated model skips
  its `record_probe` call or makes it twice.
- A learner's transcript holds only what they said or typed: spoken answers (the simulator has no
  recognizer) show as spoken, with their length; written ones verbatim.
- Each spoken answer's audio is measured, saved and served to the teacher.
- A thinking pause inside an answer does not make two answers.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from django.test import Client

from assessments.models import Assessment, Probe, TutorSession, Turn
from tutor.testing.learners import WRITTEN_LEVELS, frames, spoken_answer, written_answer
from tutor.tests.live import ThreadedSimulator, daphne_server
from tutor.tests.test_end_to_end import FRAME_GAP, login_cookie, next_json, run_learner, tutor_socket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def simulator():
    with ThreadedSimulator(pace=0.0, seed=11) as sim:
        yield sim


@pytest.fixture
def media_env(tmp_path, settings):
    settings.MEDIA_ROOT = str(tmp_path)  # the test client reads the files the server wrote
    return {"MEDIA_ROOT": str(tmp_path), "PARLA_RECORD_AUDIO": "true"}


# Every answer: the tutor model forgets its record_probe call, or makes it twice (simulator knobs).
@pytest.mark.parametrize("misbehaviour", ["skip_probe_every", "repeat_probe_every"])
def test_every_true_level_is_placed_exactly_whatever_the_tutor_does_with_its_tool(simulator, make_user, misbehaviour):
    simulator.set_knobs(**{misbehaviour: 1})
    try:
        with daphne_server(realtime_url=simulator.url, redis_url=None) as base_url:
            for level in WRITTEN_LEVELS:
                simulator.set_knobs(true_level=level)
                user = make_user(f"{misbehaviour}-{level.lower()}", learner=True)
                # A B2 learner climbs from A1 (no warm-up answer), placed by its written answers only (the
                # spoken ones have no words): with a tutor that never calls its tool, each answer is judged
                # at the end of the reply after it, and every reply is heard in real time (the page
                # reports playback): about 20 turns of ~6 s, longer than the default 90 s.
                run = asyncio.run(run_learner(base_url, login_cookie(user), level=level, timeout=240))

                assert run.of_type("error") == []
                assert run.of_type("assessment")[-1]["level"] == level, level
                assessment = Assessment.objects.get(learner__user=user)
                assert assessment.level == level and not assessment.partial
                session = TutorSession.objects.get(learner__user=user)
                probes = list(Probe.objects.filter(session=session))
                answers = Turn.objects.filter(session=session, role="learner")
                # Every judged answer was judged exactly once, by the rater.
                assert len({p.turn_id for p in probes}) == len(probes) and all(p.turn_id for p in probes)
                assert {p.rater for p in probes} == {"offline"}
                assert len(probes) >= answers.count() - 1  # the last answer may come after the ceiling
                if misbehaviour == "skip_probe_every":
                    assert all(p.tutor_outcome == "" for p in probes)  # no second opinion was ever given
                else:
                    assert sum(bool(p.tutor_outcome) for p in probes) >= len(probes) - 1
    finally:
        simulator.set_knobs(**{misbehaviour: 0})


def test_the_transcript_holds_only_the_learners_words_and_spoken_answers_are_kept(
    simulator, make_user, media_env
):
    simulator.set_knobs(true_level="A2")
    user = make_user("honest", learner=True)
    teacher = make_user("desk", teacher=True)
    with daphne_server(realtime_url=simulator.url, redis_url=None, extra_env=media_env) as base_url:
        run = asyncio.run(run_learner(base_url, login_cookie(user), level="A2"))
    typed = written_answer("A2")
    learner_lines = [e for e in run.of_type("transcript") if e["role"] == "learner"]
    spoken = [e for e in learner_lines if e.get("mode") == "spoken"]
    written = [e for e in learner_lines if e.get("mode") == "written"]
    assert spoken and written
    # Spoken: no words (the simulator cannot hear), what is known instead: its length.
    assert all(e["text"] == "" and e["spoken_ms"] > 500 for e in spoken)
    # Written: exactly what was typed, never anything else.
    assert {e["text"] for e in written} == {typed}

    session = TutorSession.objects.get(learner__user=user)
    turns = list(Turn.objects.filter(session=session, role="learner"))
    assert {t.text for t in turns} <= {"", typed}
    spoken_turns = [t for t in turns if t.mode == "spoken"]
    assert spoken_turns and all(t.text == "" for t in spoken_turns)
    assert all(t.shown_text.startswith("spoken answer, ") for t in spoken_turns)
    for turn in spoken_turns:
        assert turn.fluency["speaking_ms"] > 0 and turn.fluency["pauses"] >= 1
    judged = [t for t in spoken_turns if t.probes.exists()]
    assert judged and all(t.audio for t in judged)  # each judged spoken answer's recording is kept
    probe = judged[0].probes.get()
    assert probe.mode == "spoken" and "audio only" in probe.evidence and probe.measures["basis"] == "audio only"

    # The teacher hears it through the guarded view; the assessment page shows what is known.
    client = Client()
    client.force_login(teacher)
    response = client.get(f"/audio/turn/{judged[0].pk}/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content)[:4] == b"RIFF"
    page = client.get(f"/admin/assessments/assessment/{session.assessment.pk}/change/").content.decode()
    assert "spoken answer, " in page and "words not known" in page and "speaking_ms" in page


def test_a_thinking_pause_inside_an_answer_is_one_answer(simulator, make_user):
    """At A1 the learner pauses 1.1 s mid-answer (the API's default 500 ms silence would end the turn
    there): one answer, judged once, its pause measured. (Before, each committed piece of speech was a
    turn of its own, with its own reply.)"""
    simulator.set_knobs(true_level="A1")
    user = make_user("thinker", learner=True)
    cookie = login_cookie(user)

    async def scenario(base_url):
        async with tutor_socket(base_url, cookie) as ws:
            await ws.send(json.dumps({"type": "session.start"}))
            tutor_turns, stopped = 0, False
            while True:
                event = await next_json(ws)
                if event["type"] == "audio.end":
                    tutor_turns += 1
                    if tutor_turns == 1:
                        for frame in frames(spoken_answer("A1", pauses_ms=[1100])):
                            await ws.send(frame)
                            await asyncio.sleep(FRAME_GAP)
                if tutor_turns >= 2 and not stopped:  # the tutor has answered the answer: stop there
                    stopped = True
                    await ws.send(json.dumps({"type": "session.stop"}))
                if event["type"] == "playback.flush":
                    await ws.send(json.dumps({"type": "playback.flushed", "request_id": event["request_id"],
                                              "item_id": None, "played_ms": 0}))
                elif event["type"] == "state" and event["state"] == "ended":
                    return

    with daphne_server(realtime_url=simulator.url, redis_url=None) as base_url:
        asyncio.run(scenario(base_url))
    session = TutorSession.objects.get(learner__user=user)
    answers = list(Turn.objects.filter(session=session, role="learner"))
    assert len(answers) == 1
    assert answers[0].fluency["pauses"] == 1 and answers[0].fluency["longest_pause_ms"] >= 1000
    assert Probe.objects.filter(session=session, turn=answers[0]).count() == 1
