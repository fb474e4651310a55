"""First contact with the real Realtime API (issue 25), through the consumer: a whole placement against a
later API version and against errors that name no client event; a transcription configuration the API
rejects; fatal errors mid-session.
"""

from __future__ import annotations

import asyncio

import pytest

from assessments.models import Assessment, TutorSession
from tutor.tests.live import ThreadedSimulator, daphne_server
from tutor.tests.test_end_to_end import login_cookie, run_learner

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def simulator():
    with ThreadedSimulator(pace=0.0, seed=25, audio_ms_per_response=1500) as sim:
        yield sim


@pytest.mark.parametrize(
    "knobs",
    [{"later_version": True}, {"error_event_ids": False}],
    ids=["later-version", "errors-without-event-id"],
)
def test_a_b1_learner_by_voice_is_placed_and_delivered_against_a_later_api_version(simulator, make_user, knobs):
    """Before: the reasoning item in `response.done` made it unparsable, the response stayed active for
    good and the tutor never spoke again (issue 25, finding 2)."""
    simulator.set_knobs(true_level="B1", **knobs)
    try:
        user = make_user("later-" + "-".join(sorted(knobs)).replace("_", "-"), learner=True)
        with daphne_server(realtime_url=simulator.url, redis_url=None) as base_url:
            run = asyncio.run(run_learner(base_url, login_cookie(user), level="B1", writes=False, timeout=120))
        assert run.of_type("error") == []
        final = run.of_type("assessment")[-1]
        assert final["level"] == "B1" and final["status"] == "delivered"
        assessment = Assessment.objects.get(learner__user=user)
        assert assessment.level == "B1" and assessment.status == "delivered"
        session = TutorSession.objects.get(learner__user=user)
        assert session.turns.filter(role="learner", mode="written").count() == 0  # by voice only
        assert simulator.wait_all_closed(10) == 0
    finally:
        simulator.set_knobs(true_level=None, later_version=False, error_event_ids=True)
