"""The admin for teachers: every model browsable, assessments reviewable, learners kept out."""

import pytest
from django.urls import reverse

from assessments.models import Assessment, Learner, Probe, TutorSession, Turn
from assessments.tests.factories import make_session_with_assessment

pytestmark = pytest.mark.django_db
MODELS = (Learner, TutorSession, Turn, Probe, Assessment)


@pytest.fixture
def records(learner_user):
    return make_session_with_assessment(learner_user.learner)


@pytest.fixture
def teacher_client(client, teacher_user):
    client.force_login(teacher_user)
    return client


def admin_url(model, action, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{action}", args=args)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_teacher_browses_every_model(teacher_client, records, model):
    assert teacher_client.get(reverse("admin:index")).status_code == 200
    changelist = teacher_client.get(admin_url(model, "changelist"))
    assert changelist.status_code == 200
    obj = model.objects.first()
    assert teacher_client.get(admin_url(model, "change", obj.pk)).status_code == 200


def test_session_page_shows_its_turns_and_probes(teacher_client, records):
    session, _ = records
    html = teacher_client.get(admin_url(TutorSession, "change", session.pk)).content.decode()
    assert "Me llamo Ana." in html and "stalled" in html


def test_assessment_changelist_search_and_filters(teacher_client, records):
    url = admin_url(Assessment, "changelist")
    assert "ana" in teacher_client.get(url, {"q": "ana"}).content.decode()
    for query in ({"status__exact": "graded"}, {"level__exact": "B1"}, {"grader__exact": "rules"},
                  {"partial__exact": "0"}):
        response = teacher_client.get(url, query)
        assert response.status_code == 200  # an unknown filter would redirect with ?e=1
        assert response.context["cl"].result_count == 1


def test_teacher_cannot_add_or_delete(teacher_client, records):
    _, assessment = records
    for model in MODELS:
        assert teacher_client.get(admin_url(model, "add")).status_code == 403
    assert teacher_client.get(admin_url(Assessment, "delete", assessment.pk)).status_code == 403


def test_teacher_reviews_an_assessment(teacher_client, teacher_user, records):
    _, assessment = records
    url = admin_url(Assessment, "change", assessment.pk)
    response = teacher_client.post(url, {
        "teacher_level": "B2", "notes": "Stronger than the machine thought.",
        # A forged machine field is ignored: it is read-only in the form.
        "level": "C2",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    assessment.refresh_from_db()
    assert (assessment.teacher_level, assessment.notes) == ("B2", "Stronger than the machine thought.")
    assert assessment.level == "B1"
    assert assessment.reviewed_by == teacher_user
    assert assessment.reviewed_at is not None


def test_saving_without_review_changes_does_not_claim_a_review(teacher_client, records):
    _, assessment = records
    url = admin_url(Assessment, "change", assessment.pk)
    assert teacher_client.post(url, {"teacher_level": "", "notes": ""}).status_code == 302
    assessment.refresh_from_db()
    assert assessment.reviewed_by is None and assessment.reviewed_at is None


def test_staff_without_review_permission_cannot_edit_teacher_fields(client, make_user, records):
    from django.contrib.auth.models import Permission

    _, assessment = records
    user = make_user("viewer", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_assessment", "change_assessment"])
    )
    client.force_login(user)
    url = admin_url(Assessment, "change", assessment.pk)
    html = client.get(url).content.decode()
    assert 'name="teacher_level"' not in html and 'name="notes"' not in html


def test_learner_is_sent_to_the_admin_login(client, learner_user, records):
    client.force_login(learner_user)
    for url in (reverse("admin:index"), admin_url(Assessment, "changelist")):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
