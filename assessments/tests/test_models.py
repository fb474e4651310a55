"""Models of DESIGN section 6: CEFR levels as TextChoices, one scale with assessments.cefr."""

import pytest

from assessments.models import Assessment, CEFRLevel
from assessments.tests.factories import make_session_with_assessment
from assessments.cefr import LEVELS


def test_cefr_levels_are_text_choices_on_the_pure_scale():
    assert tuple(CEFRLevel.values) == LEVELS
    assert CEFRLevel.B1.label == "B1 Threshold"
    assert Assessment._meta.get_field("level").choices == CEFRLevel.choices


@pytest.mark.django_db
def test_records_link_up(learner_user):
    session, assessment = make_session_with_assessment(learner_user.learner)
    assert session.assessment == assessment
    assert [t.role for t in session.turns.all()] == ["tutor", "learner"]
    assert learner_user.learner.assessments.get() == assessment
    assert assessment.status == "graded" and str(assessment) == "ana (Spanish): B1 (Graded)"
