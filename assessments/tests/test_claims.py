"""Grading claims and failure reasons on the Assessment row (assessments.services)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from assessments import services
from assessments.grading import GradeResult
from assessments.models import Assessment, TutorSession

pytestmark = pytest.mark.django_db

GRADE = GradeResult("A2", {"range": "A2"}, "Good.", "rules")


@pytest.fixture
def assessment(learner_user):
    session = TutorSession.objects.create(learner=learner_user.learner, upstream="simulator", model="m", target_language="es")
    return Assessment.objects.create(learner=learner_user.learner, session=session, level="A2")


def test_a_claim_is_held_by_one_process_until_it_goes_stale(assessment, settings):
    settings.PARLA_STALE_SECONDS = 60
    live = services.process_id()  # this process, which holds its lease (assessments.leases)
    assert services.claim(assessment.pk, live)
    assert not services.claim(assessment.pk, "host:2")
    assert not services.save_grade(assessment.pk, GRADE, "host:2")  # not the holder: refused
    Assessment.objects.filter(pk=assessment.pk).update(claimed_at=timezone.now() - timedelta(seconds=61))
    assert services.claim(assessment.pk, "host:2")  # its holder stopped renewing it: taken over
    # "host:2" is no process holding a lease: a dead claimer, whose claim is taken over at once
    assert services.save_grade(assessment.pk, GRADE, live)
    assert not services.save_grade(assessment.pk, GRADE, live)  # graded once
    assert Assessment.objects.get(pk=assessment.pk).status == Assessment.Status.GRADED


def test_the_first_failure_reason_is_kept(assessment):
    services.save_grade(assessment.pk, GRADE)
    assert services.mark_delivery_failed(assessment.pk, "narrator: refused")
    assert not services.keep_undelivered(assessment.pk, GRADE, "learner disconnected (learner_left)")
    assert Assessment.objects.get(pk=assessment.pk).failure_reason == "narrator: refused"


def test_one_heartbeat_renews_every_session_and_claim_of_its_process_and_no_other(assessment, learner_user):
    old = timezone.now() - timedelta(seconds=300)
    others = [
        TutorSession.objects.create(learner=learner_user.learner, upstream="simulator", model="m",
                                    target_language="es", heartbeat_at=old)
        for _ in range(3)
    ]
    TutorSession.objects.filter(pk=assessment.session_id).update(heartbeat_at=old)
    assert services.claim(assessment.pk, "host:1")
    Assessment.objects.filter(pk=assessment.pk).update(claimed_at=old)
    services.heartbeat([assessment.session_id, others[0].pk, others[1].pk], "host:1")
    fresh = dict(TutorSession.objects.values_list("pk", "heartbeat_at"))
    assert fresh[assessment.session_id] > old and fresh[others[0].pk] > old and fresh[others[1].pk] > old
    assert fresh[others[2].pk] == old  # not one of this beat's sessions
    assert Assessment.objects.get(pk=assessment.pk).claimed_at > old  # its claim renewed
    Assessment.objects.filter(pk=assessment.pk).update(claimed_at=old)
    services.heartbeat([assessment.session_id], "host:2")  # another process renews no claim of host:1
    assert Assessment.objects.get(pk=assessment.pk).claimed_at == old
