"""Settings come from the environment, with defaults that work offline on a fresh machine."""

import pytest

from config.tests.helpers import clean_env, read_settings, run_manage

NAMES = ("DEBUG", "DATABASES", "CHANNEL_LAYERS", "ALLOWED_HOSTS", "INSTALLED_APPS", "ASGI_APPLICATION",
         "PARLA_DEMO_MODE", "PARLA_REALTIME_URL", "PARLA_GRADER", "OPENAI_API_KEY")
GOOD_KEY = "k" * 50


def test_defaults_are_sqlite_in_memory_layer_and_demo_mode():
    s = read_settings(clean_env(), *NAMES)
    assert s["DEBUG"] is True
    assert s["DATABASES"]["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert s["DATABASES"]["default"]["NAME"].endswith("db.sqlite3")
    assert s["CHANNEL_LAYERS"] == {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    assert s["ALLOWED_HOSTS"] == ["127.0.0.1", "localhost", "[::1]"]
    # Demo mode: no key, the bundled simulator (empty URL) and the offline grader.
    assert s["PARLA_DEMO_MODE"] is True
    assert s["PARLA_REALTIME_URL"] == ""
    assert s["PARLA_GRADER"] == "rules"


def test_daphne_serves_http_and_websockets():
    s = read_settings(clean_env(), *NAMES)
    assert s["INSTALLED_APPS"][0] == "daphne"  # first, so its runserver replaces Django's
    assert s["ASGI_APPLICATION"] == "config.asgi.application"


def test_redis_url_selects_channels_redis():
    s = read_settings(clean_env(REDIS_URL="redis://cache.internal:6380/2"), *NAMES)
    layer = s["CHANNEL_LAYERS"]["default"]
    # channels-redis's layer (a subclass that outlives Redis restarts: config/channel_layer.py),
    # at that address, with connection options for redis-py 8 (issue 13, django/channels_redis#422).
    from channels_redis.core import RedisChannelLayer
    from django.utils.module_loading import import_string

    assert issubclass(import_string(layer["BACKEND"]), RedisChannelLayer)
    [host] = layer["CONFIG"]["hosts"]
    assert host["address"] == "redis://cache.internal:6380/2"
    assert host["socket_timeout"] > RedisChannelLayer.brpop_timeout


def test_database_url_selects_postgresql_with_psycopg3():
    s = read_settings(clean_env(DATABASE_URL="postgres://parla:pw@db.internal:5433/parla"), *NAMES)
    db = s["DATABASES"]["default"]
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["HOST"], db["PORT"], db["NAME"], db["USER"], db["PASSWORD"]) == (
        "db.internal", 5433, "parla", "parla", "pw",
    )
    code = "import django.db.backends.postgresql.base as b; print(b.Database.__name__)"
    from config.tests.helpers import run_python

    assert run_python(code, clean_env()).stdout.strip() == "psycopg"  # psycopg 3, not psycopg2


def test_openai_api_key_selects_the_real_upstream():
    s = read_settings(clean_env(OPENAI_API_KEY="sk-test"), *NAMES)
    assert s["PARLA_DEMO_MODE"] is False
    assert s["PARLA_REALTIME_URL"] == "wss://api.openai.com/v1/realtime"
    assert s["PARLA_GRADER"] == "openai"


@pytest.mark.parametrize(
    "env, message",
    [
        ({}, "DEBUG is off: set SECRET_KEY"),
        ({"SECRET_KEY": "short"}, "DEBUG is off: set SECRET_KEY"),
        ({"SECRET_KEY": GOOD_KEY}, "DEBUG is off: set ALLOWED_HOSTS"),
        ({"SECRET_KEY": GOOD_KEY, "ALLOWED_HOSTS": ""}, "DEBUG is off: set ALLOWED_HOSTS"),
    ],
)
def test_debug_off_refuses_to_start_without_secret_key_and_allowed_hosts(env, message):
    result = run_manage("check", env=clean_env(DEBUG="false", **env))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_debug_off_starts_with_secret_key_and_allowed_hosts():
    env = clean_env(DEBUG="false", SECRET_KEY=GOOD_KEY, ALLOWED_HOSTS="parla.example.org")
    result = run_manage("check", env=env)
    assert result.returncode == 0, result.stderr
    s = read_settings(env, "DEBUG", "ALLOWED_HOSTS", "SESSION_COOKIE_SECURE")
    assert s == {"DEBUG": False, "ALLOWED_HOSTS": ["parla.example.org"], "SESSION_COOKIE_SECURE": True}


def test_malformed_boolean_is_refused_with_its_name():
    result = run_manage("check", env=clean_env(DEBUG="maybe"))
    assert result.returncode != 0
    assert "DEBUG must be one of" in result.stderr
