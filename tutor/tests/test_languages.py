"""A learner chooses the language to be placed in; nobody else's profile can be touched."""

import pytest
from django.urls import reverse

from assessments.models import Learner

pytestmark = pytest.mark.django_db


def test_learner_changes_their_languages(client, learner_user):
    client.force_login(learner_user)
    response = client.post(reverse("tutor:languages"), {"target_language": "fr", "native_language": "de"})
    assert response.status_code == 302 and response["Location"] == reverse("tutor:session")
    learner = Learner.objects.get(user=learner_user)
    assert (learner.target_language, learner.native_language) == ("fr", "de")
    page = client.get(reverse("tutor:session"))
    assert "Your next session is in French." in page.content.decode()
    assert 'data-language="fr"' in page.content.decode()


def test_same_target_and_native_language_is_refused_and_nothing_changes(client, learner_user):
    client.force_login(learner_user)
    response = client.post(reverse("tutor:languages"), {"target_language": "en", "native_language": "en"})
    assert response.status_code == 400
    assert "not your native language" in response.content.decode()
    assert Learner.objects.get(user=learner_user).target_language == "es"


def test_unknown_language_is_refused(client, learner_user):
    client.force_login(learner_user)
    response = client.post(reverse("tutor:languages"), {"target_language": "xx", "native_language": "en"})
    assert response.status_code == 400
    assert Learner.objects.get(user=learner_user).target_language == "es"


def test_only_learners_and_only_by_post(client, learner_user, teacher_user):
    client.force_login(learner_user)
    assert client.get(reverse("tutor:languages")).status_code == 405
    client.force_login(teacher_user)
    assert client.post(reverse("tutor:languages"), {"target_language": "fr", "native_language": "en"}).status_code == 403
    client.logout()
    response = client.post(reverse("tutor:languages"), {"target_language": "fr", "native_language": "en"})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_feedback_in_the_native_language_is_an_option_and_english_the_default(client, learner_user):
    from tutor.runtime.session import SessionConfig

    assert SessionConfig.for_learner(Learner.objects.get(user=learner_user)).feedback_language == "en"
    client.force_login(learner_user)
    client.post(reverse("tutor:languages"),
                {"target_language": "es", "native_language": "fr", "feedback_in_native_language": "on"})
    learner = Learner.objects.get(user=learner_user)
    assert learner.feedback_in_native_language
    assert SessionConfig.for_learner(learner).feedback_language == "fr"
