"""The demo tutor as a learner meets it (issue 24, finding 10), through the real consumer with the
simulator as upstream: its last line before the summary is not left cut off in the transcript, and it
does not ask the learner's name once the learner has answered (it cannot hear what a spoken answer
said, so it asks the name only when it greets)."""

import pytest
from asgiref.sync import sync_to_async

from tutor.realtime.simulator.persona import QUESTIONS
from tutor.testing.learners import written_answer
from tutor.testing.realtime_client import start_simulator
from tutor.tests.test_warm_up import answered_in_writing

pytestmark = pytest.mark.django_db(transaction=True)

NAME_QUESTIONS = {bank["A1"][0] for bank in QUESTIONS.values()}  # "¿Cómo te llamas?" and its kin


async def whole_session(headers, settings, first_answer: str, true_level: str, probe_shape: str) -> list[dict]:
    """A session answered in writing (the first answer `first_answer`, then answers of `true_level`)
    until the assessment is delivered; every JSON event the page was sent."""
    answers = [first_answer]
    async with start_simulator(pace=0, true_level=true_level, probe_shape=probe_shape) as sim:
        settings.PARLA_REALTIME_URL = sim.url
        return await answered_in_writing(
            headers, {"type": "session.start"}, lambda: answers.pop(0) if answers else written_answer(true_level)
        )


@pytest.mark.parametrize("probe_shape", ["call_answer", "preamble_call_answer"])
async def test_no_tutor_line_is_left_cut_off_and_the_name_is_not_asked_after_an_answer(
    settings, session_cookie_headers, learner_user, probe_shape
):
    headers = await sync_to_async(session_cookie_headers)(learner_user)
    events = await whole_session(headers, settings, "Me llamo Ana y soy de Madrid.", "A2", probe_shape)
    tutor = [e for e in events if e["type"] == "transcript" and e["role"] == "tutor"]
    shown = {e["item_id"] for e in tutor}
    finished = {e["item_id"]: e["text"] for e in tutor if e["final"]}
    # Every tutor line the page began to show is finished there (its whole text, final), the last one too.
    assert shown == set(finished), [e for e in tutor if e["item_id"] not in finished]
    # The name is asked in the greeting only; after the learner's first answer, never again.
    order = [e for e in events if e["type"] == "transcript" and e["final"] and e["role"] in ("tutor", "learner")]
    first_answer = next(i for i, e in enumerate(order) if e["role"] == "learner")
    later = [e["text"] for e in order[first_answer:] if e["role"] == "tutor"]
    assert later and not [line for line in later if any(q in line for q in NAME_QUESTIONS)], later
