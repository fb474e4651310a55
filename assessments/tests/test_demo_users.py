"""manage.py create_demo_users: DEBUG only, passwords printed once, idempotent."""

import re
from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command

from assessments.roles import TEACHERS_GROUP

pytestmark = pytest.mark.django_db
CREDENTIALS = re.compile(r"username=(\S+) password=(\S+)")


def run(*args) -> str:
    out = StringIO()
    call_command("create_demo_users", *args, stdout=out)
    return out.getvalue()


def test_refuses_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="only with DEBUG on"):
        run()
    assert not get_user_model().objects.exists()


def test_creates_learner_and_teacher_and_prints_their_passwords(settings):
    settings.DEBUG = True
    credentials = dict(CREDENTIALS.findall(run()))
    assert set(credentials) == {"learner", "teacher"}
    learner = authenticate(username="learner", password=credentials["learner"])
    teacher = authenticate(username="teacher", password=credentials["teacher"])
    assert learner and teacher
    assert learner.learner.target_language == "es" and not learner.is_staff
    assert teacher.is_staff and not teacher.is_superuser
    assert teacher.groups.filter(name=TEACHERS_GROUP).exists()
    assert not hasattr(teacher, "learner") or teacher.learner is None
    assert credentials["learner"] != credentials["teacher"]


def test_second_run_keeps_passwords_and_prints_none(settings):
    settings.DEBUG = True
    first = dict(CREDENTIALS.findall(run()))
    again = run()
    assert CREDENTIALS.findall(again) == []
    assert "password unchanged" in again
    assert authenticate(username="learner", password=first["learner"])
    assert get_user_model().objects.count() == 2


def test_reset_gives_new_passwords(settings):
    settings.DEBUG = True
    first = dict(CREDENTIALS.findall(run()))
    second = dict(CREDENTIALS.findall(run("--reset")))
    assert set(second) == {"learner", "teacher"} and second != first
    assert authenticate(username="teacher", password=second["teacher"])
    assert not authenticate(username="teacher", password=first["teacher"])
