"""Home, login and logout pages, and the tutor page behind the login."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_home_page_says_what_parla_is_and_links_to_the_tutor(client):
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Parla is a voice tutor" in html
    assert f'href="{reverse("tutor:session")}"' in html
    assert reverse("login") in html


def test_demo_badge_shows_in_demo_mode_only(client, settings):
    settings.PARLA_DEMO_MODE = True
    assert "Demo mode - bundled simulator, no API key" in client.get("/").content.decode()
    settings.PARLA_DEMO_MODE = False
    assert "Demo mode - bundled simulator" not in client.get("/").content.decode()


def test_static_stylesheet_is_linked(client):
    assert "/static/css/parla.css" in client.get("/").content.decode()


def test_login_page(client):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="username"' in html and 'name="password"' in html
    assert "csrfmiddlewaretoken" in html


def test_learner_logs_in_lands_on_the_tutor_page_and_logs_out(client, learner_user):
    response = client.post("/accounts/login/", {"username": "ana", "password": "correct horse battery"})
    assert response.status_code == 302
    assert response["Location"] == reverse("tutor:session")
    page = client.get(reverse("tutor:session"))
    assert page.status_code == 200
    assert "Log out" in page.content.decode()

    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert response["Location"] == reverse("home")
    assert client.get(reverse("tutor:session")).status_code == 302  # logged out again


def test_wrong_password_shows_an_error(client, learner_user):
    response = client.post("/accounts/login/", {"username": "ana", "password": "nope"})
    assert response.status_code == 200
    assert "didn't match" in response.content.decode()


def test_tutor_page_requires_login(client):
    response = client.get(reverse("tutor:session"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


def test_admin_link_only_for_staff(client, learner_user, teacher_user):
    client.force_login(learner_user)
    assert 'href="/admin/"' not in client.get("/").content.decode()
    client.force_login(teacher_user)
    assert 'href="/admin/"' in client.get("/").content.decode()


def test_a_teacher_who_logs_in_lands_on_their_desk(client, teacher_user):
    response = client.post("/accounts/login/?next=/session/", {"username": "tomas", "password": "correct horse battery"},
                           follow=True)
    assert response.redirect_chain[-1][0] == reverse("admin:index")
    html = response.content.decode()
    assert "Teachers&#x27; desk" in html or "Teachers' desk" in html
    assert "not a learner account" not in html
