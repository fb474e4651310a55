"""grade_pending: assessments the server left pending get graded from what was stored."""

from io import StringIO

import pytest
from django.core.management import call_command

from assessments.models import Assessment, Probe, TutorSession, Turn

pytestmark = pytest.mark.django_db


def pending_assessment(learner, probes, end_reason="ceiling"):
    session = TutorSession.objects.create(
        learner=learner, upstream="simulator", model="gpt-realtime", target_language="es", end_reason=end_reason
    )
    for level, outcome in probes:
        Probe.objects.create(session=session, level=level, outcome=outcome)
    Turn.objects.create(session=session, role="learner", text="Ayer fui al mercado con mi hermana.", level="A2")
    return Assessment.objects.create(learner=learner, session=session, level="A1")


def test_pending_assessments_are_graded_by_replaying_their_probes(learner_user):
    ladder = [("A1", "sustained"), ("A1", "sustained"), ("A2", "sustained"), ("A2", "sustained"),
              ("B1", "breakdown"), ("B1", "breakdown")]
    assessment = pending_assessment(learner_user.learner, ladder)
    delivered = pending_assessment(learner_user.learner, [])
    Assessment.objects.filter(pk=delivered.pk).update(status="delivered", level="C1")
    out = StringIO()
    call_command("grade_pending", stdout=out)
    assessment.refresh_from_db()
    assert assessment.status == Assessment.Status.GRADED
    assert assessment.level == "A2"  # the floor of the stored ladder
    assert assessment.grader == "rules" and "A2" in assessment.summary
    # The five criteria text can show, and phonology, which it cannot: stored as "not assessed".
    assert set(assessment.criteria) == {"range", "accuracy", "fluency", "interaction", "coherence", "phonology"}
    assert assessment.criteria["phonology"]["level"] is None
    assert Assessment.objects.get(pk=delivered.pk).level == "C1"  # untouched
    assert "graded 1 pending assessment(s)" in out.getvalue()


def test_unfinished_ladder_is_graded_as_partial_what_is_known(learner_user):
    assessment = pending_assessment(learner_user.learner, [("A1", "sustained"), ("A1", "sustained")], "time_cap")
    call_command("grade_pending", stdout=StringIO())
    assessment.refresh_from_db()
    assert assessment.level == "A1"
    assert "provisional" in assessment.summary.lower()
