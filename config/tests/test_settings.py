"""Settings come from the environment, with defaults that work offline on a fresh machine."""

import pytest

from config.tests.helpers import clean_env, read_settings, run_manage

NAMES = ("DEBUG", "DATABASES", "CHANNEL_LAYERS", "ALLOWED_HOSTS", "INSTALLED_APPS", "ASGI_APPLICATION",
         "PARLA_DEMO_MODE", "PARLA_REALTIME_URL", "PARLA_GRADER", "OPENAI_API_KEY")
GOOD_KEY = "parla-settings-test-key-" + "k" * 26  # 50 characters, more than 5 of them different


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


def test_postgresql_connections_come_from_django_s_pool():
    s = read_settings(clean_env(DATABASE_URL="postgres://parla:pw@db.internal:5433/parla"), *NAMES)
    db = s["DATABASES"]["default"]
    assert db["CONN_MAX_AGE"] == 0  # Django refuses persistent connections with a pool
    assert db["OPTIONS"]["pool"] == {"min_size": 2, "max_size": 10, "timeout": 10}
    s = read_settings(clean_env(DATABASE_URL="postgres://parla:pw@db/parla", DATABASE_POOL_MAX_SIZE="0"), *NAMES)
    assert "pool" not in s["DATABASES"]["default"].get("OPTIONS", {})
    s = read_settings(clean_env(), *NAMES)
    assert "pool" not in s["DATABASES"]["default"].get("OPTIONS", {})  # SQLite has none


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
async def test_database_calls_of_a_session_reuse_pooled_connections():
    """Each database_sync_to_async call used to open (and close) a PostgreSQL connection of its own."""
    from channels.db import database_sync_to_async
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the pool is PostgreSQL's")

    def backend_pid():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]

    pids = {await database_sync_to_async(backend_pid)() for _ in range(20)}
    # The pool's own few (it opens its 2 in the background, and may add one while they connect).
    assert len(pids) <= 4, f"{len(pids)} connections opened for 20 calls"


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
        ({"SECRET_KEY": "x" * 40 + "abcdefghi"}, "DEBUG is off: set SECRET_KEY"),  # 49: check --deploy's W009
        ({"SECRET_KEY": "abcd" * 20}, "DEBUG is off: set SECRET_KEY"),  # 4 different characters: W009 too
        ({"SECRET_KEY": "django-insecure-" + "abcdefghij" * 4}, "DEBUG is off: set SECRET_KEY"),
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


def test_current_models_are_the_defaults_and_manage_check_is_clean_with_them():
    env = clean_env()
    s = read_settings(env, "PARLA_REALTIME_MODEL", "PARLA_TRANSCRIPTION_MODEL", "PARLA_GRADER_MODEL",
                      "PARLA_REASONING_EFFORT")
    assert s == {"PARLA_REALTIME_MODEL": "gpt-realtime-2.1", "PARLA_TRANSCRIPTION_MODEL": "gpt-transcribe",
                 "PARLA_GRADER_MODEL": "gpt-6-luna", "PARLA_REASONING_EFFORT": "low"}
    result = run_manage("check", env=env)
    assert result.returncode == 0, result.stderr
    assert "parla.W001" not in result.stdout + result.stderr
    assert "parla.W002" not in result.stdout + result.stderr


def test_manage_check_warns_about_a_transcription_model_that_needs_turn_detection_off():
    """gpt-live-transcribe was the default before issue 25; no source shows it with VAD on."""
    result = run_manage("check", env=clean_env(PARLA_TRANSCRIPTION_MODEL="gpt-live-transcribe"))
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "parla.W002" in out and "PARLA_TRANSCRIPTION_MODEL='gpt-live-transcribe'" in out and "realtime_check" in out


def test_manage_check_warns_about_each_model_with_an_announced_shutdown():
    # Old defaults, each with an announced shutdown (config/openai_models.py lists them with the source).
    env = clean_env(PARLA_REALTIME_MODEL="gpt-realtime-mini", PARLA_TRANSCRIPTION_MODEL="whisper-1",
                    PARLA_GRADER_MODEL="gpt-4.1-mini")
    result = run_manage("check", env=env)
    assert result.returncode == 0, result.stderr  # a warning, not an error: the server still starts
    out = result.stdout + result.stderr
    assert out.count("parla.W001") == 3, out
    assert "PARLA_REALTIME_MODEL='gpt-realtime-mini'" in out and "2027-01-20" in out
    assert "PARLA_TRANSCRIPTION_MODEL='whisper-1'" in out and "2027-02-26" in out
    assert "PARLA_GRADER_MODEL='gpt-4.1-mini'" in out and "2027-01-14" in out


def test_reasoning_effort_takes_the_apis_values_or_empty():
    assert read_settings(clean_env(PARLA_REASONING_EFFORT="XHigh"), "PARLA_REASONING_EFFORT") == {
        "PARLA_REASONING_EFFORT": "xhigh"
    }
    assert read_settings(clean_env(PARLA_REASONING_EFFORT=""), "PARLA_REASONING_EFFORT") == {
        "PARLA_REASONING_EFFORT": ""
    }
    result = run_manage("check", env=clean_env(PARLA_REASONING_EFFORT="max"))
    assert result.returncode != 0
    assert "PARLA_REASONING_EFFORT must be one of minimal, low, medium, high, xhigh" in result.stderr


def test_the_shortest_key_debug_off_accepts_is_one_check_deploy_accepts():
    """The settings refuse what `check --deploy` would warn about (security.W009), and no more."""
    shortest = "abcde" * 10  # 50 characters, 5 different
    env = clean_env(DEBUG="false", SECRET_KEY=shortest, ALLOWED_HOSTS="parla.example.org")
    result = run_manage("check", "--deploy", env=env)
    assert result.returncode == 0, result.stderr
    assert "security.W009" not in result.stdout + result.stderr
    refused = run_manage("check", env={**env, "SECRET_KEY": shortest[:-1]})
    assert "DEBUG is off: set SECRET_KEY" in refused.stderr
