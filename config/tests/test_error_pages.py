"""404 and 403 as `scripts/run` serves them (DEBUG on), through the HTTP layer (issue 24, finding 11):
Parla's own pages, a learner kept out of the admin, and expected refusals logged in one line."""

import logging

import pytest

from assessments.tests.factories import make_session_with_assessment

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def debug_on(settings):
    settings.DEBUG = True  # as under scripts/run


def test_an_unknown_url_is_parlas_404_page_not_the_url_list(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "There is nothing here" in html
    assert "URLconf" not in html and "admin/" not in html  # Django's debug page lists every URL


def test_a_404_raised_by_a_view_is_parlas_page_too(client, learner_user, make_user):
    other = make_user("bruno", learner=True)
    _, theirs = make_session_with_assessment(other.learner)
    client.force_login(learner_user)
    response = client.get(f"/history/{theirs.pk}/")
    assert response.status_code == 404 and "There is nothing here" in response.content.decode()


def test_an_unknown_url_without_its_slash_still_redirects(client):
    assert client.get("/history")["Location"] == "/history/"  # APPEND_SLASH comes before the 404


def test_a_learner_opening_the_admin_is_told_it_is_not_theirs(client, learner_user):
    client.force_login(learner_user)
    response = client.get("/admin/", follow=True)
    assert response.status_code == 403
    html = response.content.decode()
    assert "The admin is for teachers" in html and "Error 403" in html
    assert 'name="password"' not in html  # not the admin's login form for another account


def test_the_admin_login_still_serves_teachers(client, teacher_user):
    response = client.get("/admin/", follow=True)
    assert response.status_code == 200 and 'name="password"' in response.content.decode()
    client.force_login(teacher_user)
    assert client.get("/admin/").status_code == 200


def test_an_expected_403_is_logged_at_info_without_a_traceback(client, teacher_user, caplog):
    client.force_login(teacher_user)
    with caplog.at_level(logging.INFO):
        response = client.get("/history/")  # a teacher has no learner history
    assert response.status_code == 403 and "Error 403" in response.content.decode()
    forbidden = [r for r in caplog.records if r.getMessage() == "forbidden"]
    assert len(forbidden) == 1 and forbidden[0].levelno == logging.INFO
    assert forbidden[0].path == "/history/" and forbidden[0].user_id == teacher_user.pk
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]
