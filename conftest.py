"""Repo-wide pytest fixtures, grouped by concern. Add yours under a section of its own."""

import os
import tempfile
from pathlib import Path

import pytest

# --- Nothing written into the checkout -----------------------------------------------------------
# Hypothesis keeps the failing examples it replays next time, and caches, in its storage directory
# (./.hypothesis by default, read when first used): outside the checkout; a value you set wins.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "parla-hypothesis"))


@pytest.fixture(autouse=True, scope="session")
def _output_in_a_scratch_folder(tmp_path_factory):
    """Live servers' logs and screenshots go to this run's temporary folder (pytest keeps the last
    three runs' under /tmp/pytest-of-USER), or to PARLA_TEST_OUTPUT when set."""
    from tutor.tests.live import use_output_dir

    use_output_dir(tmp_path_factory.mktemp("output"))


@pytest.fixture(autouse=True, scope="session")
def _media_in_a_scratch_folder(tmp_path_factory):
    """Learners' recordings of in-process test sessions go to a temporary folder, never into ./media
    (live servers get one of their own: tutor/tests/live.py)."""
    from django.test import override_settings

    with override_settings(MEDIA_ROOT=str(tmp_path_factory.mktemp("media"))):
        yield


@pytest.fixture(autouse=True, scope="session")
def _channel_layer_of_this_process():
    """In-process tests on the Redis layer (REDIS_URL) use a channel-layer prefix of this test
    process's own: test workers share one Redis, and a teacher's live view in one worker must not
    receive the sessions another worker's tests announce (the teachers' group is one name). Live
    servers have prefixes of their own (tutor/tests/live.py). Channels rebuilds its layers when the
    setting changes (channels/layers.py, ChannelLayerManager._reset_backends)."""
    from django.conf import settings
    from django.test import override_settings

    default = settings.CHANNEL_LAYERS.get("default", {})
    prefix = default.get("CONFIG", {}).get("prefix")
    if prefix is None:  # the in-memory layer: one process's own already
        yield
        return
    config = {**default["CONFIG"], "prefix": f"{prefix}-test-{os.getpid()}"}
    with override_settings(CHANNEL_LAYERS={**settings.CHANNEL_LAYERS, "default": {**default, "CONFIG": config}}):
        yield


# --- Test database -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """On PostgreSQL, a test database of this run's own (`test_<name>_<pid>`): runs that share one
    server (developers side by side, a CI run beside them) must not drop each other's database."""
    from django.conf import settings

    for db in settings.DATABASES.values():
        if db["ENGINE"] == "django.db.backends.postgresql":
            test = db.setdefault("TEST", {})
            test["NAME"] = f"{test.get('NAME') or 'test_' + db['NAME']}_{os.getpid()}"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database, and before it is dropped, this process's lease (assessments.leases) given
    up: its connection would keep PostgreSQL from dropping the database."""
    yield
    from django.db import connection

    from assessments import leases

    leases.release()
    if connection.vendor == "postgresql":
        # A connection some thread or server of this run still holds (a live server's, a worker
        # thread's) would keep PostgreSQL from dropping the database, which would then stay behind.
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Tests create and log in many users; the production hasher's slowness buys nothing here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- Resuming placements ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_resume_unless_asked(settings):
    """A dropped socket ends its placement at once in tests (PARLA_RESUME_SECONDS=0, as live test
    servers get it: tutor/tests/live.py), as the tests of leaving expect; the tests of resuming
    (tutor/tests/test_resume*.py) turn it on."""
    settings.PARLA_RESUME_SECONDS = 0


# --- Users and logins ------------------------------------------------------------------------
# The Origin/Host a browser on `scripts/run`'s server sends; both are in the default ALLOWED_HOSTS.
BROWSER_ORIGIN = "http://127.0.0.1:8000"


@pytest.fixture
def make_user(db):
    """make_user(username, *, learner=False, teacher=False, **fields) -> User.

    learner=True adds a Learner profile (target Spanish); teacher=True makes a staff user in the
    Teachers group.
    """
    from django.contrib.auth import get_user_model

    from assessments.models import Learner
    from assessments.roles import ensure_teachers_group

    def make(username, *, learner=False, teacher=False, password="correct horse battery", **fields):
        fields.setdefault("is_staff", teacher)
        user = get_user_model().objects.create_user(username=username, password=password, **fields)
        if learner:
            Learner.objects.create(user=user)
        if teacher:
            user.groups.add(ensure_teachers_group())
        return user

    return make


@pytest.fixture
def learner_user(make_user):
    return make_user("ana", learner=True)


@pytest.fixture
def teacher_user(make_user):
    return make_user("tomas", teacher=True)


@pytest.fixture
def session_cookie_headers(db):
    """session_cookie_headers(user=None) -> ASGI headers of a browser on 127.0.0.1:8000.

    With a user, logs them in (Django test client) and adds their session cookie, as a browser
    opening /ws/tutor/ from the tutor page would send. It touches the database synchronously: call
    it from a sync fixture, or with `await sync_to_async(session_cookie_headers)(user)`.
    """
    from django.conf import settings
    from django.test import Client

    def headers(user=None, *, origin=BROWSER_ORIGIN):
        result = [(b"host", b"127.0.0.1:8000"), (b"origin", origin.encode())]
        if user is not None:
            client = Client()
            client.force_login(user)
            cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
            result.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
        return result

    return headers
