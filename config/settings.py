"""Parla settings.

Everything is read from the environment with embedded defaults that work offline on a fresh
machine: SQLite, the in-memory channel layer and the bundled realtime simulator. The README's
configuration table lists every variable read here (a test compares the two).
"""

import os
import tempfile
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

from config.channel_layer import redis_channel_layer
from config.env import env, env_bool, env_float, env_int, env_list
from config.openai_models import REASONING_EFFORTS

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", True)

_DEV_SECRET_KEY = "parla-dev-only-insecure-key-do-not-use-in-production"
SECRET_KEY = env("SECRET_KEY", _DEV_SECRET_KEY)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

if not DEBUG:
    # Refuse to start rather than run a production server with a public key or no host check. The key
    # must pass what `check --deploy` asks of it (security.W009: 50+ characters, 5+ different ones, not
    # Django's insecure prefix), so that a server that starts also checks clean.
    if (
        SECRET_KEY == _DEV_SECRET_KEY
        or len(SECRET_KEY) < SECRET_KEY_MIN_LENGTH
        or len(set(SECRET_KEY)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
        or SECRET_KEY.startswith(SECRET_KEY_INSECURE_PREFIX)
    ):
        raise ImproperlyConfigured(
            f"DEBUG is off: set SECRET_KEY to a random string of at least {SECRET_KEY_MIN_LENGTH} characters, "
            f"{SECRET_KEY_MIN_UNIQUE_CHARACTERS} or more of them different "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))')."
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "DEBUG is off: set ALLOWED_HOSTS to the comma-separated host names Parla is served on."
        )
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    # HTTPS only: plain HTTP is redirected, and browsers told to use HTTPS for this long (HSTS: start
    # small, e.g. 3600, and raise it to a year once HTTPS is known to work; see README "Deployment").
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)

# Behind a TLS-terminating proxy: the header it sets to "https" (e.g. X-Forwarded-Proto). Trust it
# only when the proxy always sets it (and strips it from clients).
_PROXY_SSL_HEADER = env("SECURE_PROXY_SSL_HEADER", "")
if _PROXY_SSL_HEADER:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _PROXY_SSL_HEADER.upper().replace("-", "_"), "https")

INSTALLED_APPS = [
    "daphne",  # first: its runserver serves HTTP and websockets through config.asgi
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",  # login throttling
    "csp",  # Content-Security-Policy (Django 5.2 has none of its own; Django 6.0 adds one)
    "assessments",
    "tutor",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Above WhiteNoise, which answers /static/ itself: static responses get these headers too.
    "config.middleware.PermissionsPolicyMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "config.middleware.ErrorPagesMiddleware",  # Parla's 404/403 pages under DEBUG too
    "axes.middleware.AxesMiddleware",  # last, as django-axes requires
]

# --- Security ----------------------------------------------------------------------------------
# Content-Security-Policy (django-csp 4): every script, style sheet and AudioWorklet module is a file
# under /static/ on this origin (no inline scripts or styles in templates/; `json_script` data blocks
# are not executed), the sockets are same-origin (CSP3 'self' covers ws:/wss: of this host).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],  # data: for the empty favicon in base.html
        "connect-src": ["'self'"],
        "worker-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# Login throttling (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one user name from
# one address, that pair is locked out for LOGIN_LOCKOUT_MINUTES (HTTP 429). Keyed on the pair, so
# nobody can lock a learner out from elsewhere, and a classroom behind one address is not locked
# together.
AUTHENTICATION_BACKENDS = [
    "config.auth_backends.LoginThrottleBackend",  # first: it refuses locked-out attempts (django-axes)
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("LOGIN_LOCKOUT_MINUTES", 15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tutor.context_processors.parla",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"), conn_max_age=0
    )
}
# PostgreSQL connections come from a pool (Django 5.2's, psycopg_pool) instead of a new connection for
# every database call: Django's docs say persistent connections (CONN_MAX_AGE) should be disabled under
# ASGI, where sync code runs in short-lived threads, and the backend's pool used instead (README
# "Deployment": connection pooling). DATABASE_POOL_MAX_SIZE=0 turns it off (e.g. behind PgBouncer).
DATABASE_POOL_MAX_SIZE = env_int("DATABASE_POOL_MAX_SIZE", 10)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DATABASE_POOL_MAX_SIZE > 0:
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(2, DATABASE_POOL_MAX_SIZE),
        "max_size": DATABASE_POOL_MAX_SIZE,
        "timeout": 10,  # seconds a database call waits for a free connection before it fails
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory: the end-to-end tests' Daphne server runs in another process and must see
    # the test database.
    # One file per test process, so parallel runs never share it.
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(tempfile.gettempdir(), f"parla-test-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", "")
if REDIS_URL:
    # Socket timeout above the layer's blocking receive, retries, keepalive, restored groups after a
    # Redis restart: see config/channel_layer.py (django/channels_redis#422).
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL, env("CHANNELS_PREFIX", "parla"))}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "tutor:session"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

# Learners' recorded answers go through Django's storage API (STORAGES["default"]): local files under
# MEDIA_ROOT unless another backend is configured. They are never served from MEDIA_URL by Parla: only
# assessments.views.turn_audio serves them, to teachers and to the learner they belong to.
MEDIA_ROOT = env("MEDIA_ROOT", str(BASE_DIR / "media"))
MEDIA_URL = env("MEDIA_URL", "media/")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"structured": {"()": "config.logging.StructuredFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {
        "django": {"level": "INFO"},
        "daphne": {"level": "WARNING"},
        "websockets": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
    },
}

# --- Parla -----------------------------------------------------------------------------------
# Upstream: the real OpenAI Realtime API when a key is set, else the bundled simulator.
OPENAI_API_KEY = env("OPENAI_API_KEY", "")
PARLA_REALTIME_URL = env(
    "PARLA_REALTIME_URL", "wss://api.openai.com/v1/realtime" if OPENAI_API_KEY else ""
)  # empty = start the bundled simulator inside the server process (demo mode)
PARLA_DEMO_MODE = not OPENAI_API_KEY
# The current realtime model: "Build a low-latency voice agent: gpt-realtime-2.1" (the Realtime guide,
# developers.openai.com/api/docs/guides/realtime; GPT-Realtime-2.1 is the update of GPT-Realtime-2,
# developers.openai.com/api/docs/models/gpt-realtime-2.1). Models with an announced shutdown are listed
# in config/openai_models.py, and `manage.py check` warns about them.
PARLA_REALTIME_MODEL = env("PARLA_REALTIME_MODEL", "gpt-realtime-2.1")
# `reasoning.effort` of the tutor session, sent only to models that take it (the gpt-realtime-2
# family); one of openai.types.realtime.RealtimeReasoningEffort, or empty for the model's own default.
# Low keeps the tutor's turns quick ("Low effort is the default and keeps responses quick":
# vercel.com/ai-gateway/models/gpt-realtime-2/about).
PARLA_REASONING_EFFORT = env("PARLA_REASONING_EFFORT", "low").strip().lower()
if PARLA_REASONING_EFFORT and PARLA_REASONING_EFFORT not in REASONING_EFFORTS:
    raise ImproperlyConfigured(
        f"PARLA_REASONING_EFFORT must be one of {', '.join(REASONING_EFFORTS)} or empty; got {PARLA_REASONING_EFFORT!r}."
    )
PARLA_TUTOR_VOICE = env("PARLA_TUTOR_VOICE", "marin")
PARLA_SUMMARY_VOICE = env("PARLA_SUMMARY_VOICE", "alloy")
# The learner's speech is transcribed per committed turn of a conversation session with VAD on, which is
# what gpt-transcribe is documented for ("committed turns in Realtime sessions over WebSocket":
# developers.openai.com/api/docs/models/gpt-transcribe); gpt-live-transcribe and gpt-realtime-whisper
# require turn detection off (tutor/persona.py, per model family, with the sources). Not on the
# announced-shutdown list (openai/types/realtime/audio_transcription.py).
PARLA_TRANSCRIPTION_MODEL = env("PARLA_TRANSCRIPTION_MODEL", "gpt-transcribe")
# Output speech speed by level: slower for beginners (0.25..1.5, applied between turns).
PARLA_SPEED_BEGINNER = env_float("PARLA_SPEED_BEGINNER", 0.85)
PARLA_SPEED_DEFAULT = env_float("PARLA_SPEED_DEFAULT", 1.0)
PARLA_SESSION_MAX_MINUTES = env_float("PARLA_SESSION_MAX_MINUTES", 20.0)
# No rating without evidence: a session with fewer rated answers ends not_rated. Two is the least the
# placement rules decide on (two sustained answers sustain a level, two breakdowns find the ceiling).
PARLA_MIN_RATED_ANSWERS = env_int("PARLA_MIN_RATED_ANSWERS", 2)
PARLA_GRADER = env("PARLA_GRADER", "openai" if OPENAI_API_KEY else "rules")
# A current text model with structured outputs for focused, high-volume tasks: gpt-6-luna (listed in
# openai/types/shared/chat_model.py; its model page developers.openai.com/api/docs/models/gpt-6-luna;
# the recommended replacement of the previous default, whose shutdown is announced for 2027-01-14).
PARLA_GRADER_MODEL = env("PARLA_GRADER_MODEL", "gpt-6-luna")
PARLA_GRADER_TIMEOUT = env_float("PARLA_GRADER_TIMEOUT", 20.0)
# The independent rater of each answer (assessments/rating). Default model: a current small model, not on
# the announced-shutdown list of the pinned openai package (openai/types/shared/chat_model.py, 3.57.0).
PARLA_RATER = env("PARLA_RATER", "openai" if OPENAI_API_KEY else "offline")
PARLA_RATER_MODEL = env("PARLA_RATER_MODEL", "gpt-5.4-mini")
PARLA_RATER_TIMEOUT = env_float("PARLA_RATER_TIMEOUT", 8.0)
PARLA_STEP_TIMEOUT = env_float("PARLA_STEP_TIMEOUT", 5.0)
# Websocket keepalive of every upstream session (tutor/realtime/client.py): a ping this often; an upstream
# that answers none for this long is taken as gone (noticed within 2x this), and the session resumes or ends.
PARLA_UPSTREAM_KEEPALIVE_SECONDS = env_float("PARLA_UPSTREAM_KEEPALIVE_SECONDS", 5.0)
# The bundled simulator generates audio at this multiple of real time; 4.0 like the real API, which
# produces audio faster than real time (tutor/realtime/simulator/knobs.py DEFAULT_PACE says where).
PARLA_SIMULATOR_PACE = env_float("PARLA_SIMULATOR_PACE", 4.0)
# Seconds past the expected end of an assistant item (its length, played in real time from the page's
# last report) after which the item is taken as over when the page does not report its end.
PARLA_PLAYBACK_MARGIN = env_float("PARLA_PLAYBACK_MARGIN", 2.0)
PARLA_VALIDATE_EVENTS = env_bool("PARLA_VALIDATE_EVENTS", DEBUG)
# A folder: each upstream session's events are written there as JSON lines (audio as byte counts, never
# the learner's audio or the key), for an operator to read or replay (tutor/realtime/record.py). Empty: off.
PARLA_UPSTREAM_LOG = env("PARLA_UPSTREAM_LOG", "")
# Crash recovery (assessments/recovery.py): a running session writes a heartbeat this often, and each
# server process sweeps as often; a session (or grading claim) silent for PARLA_STALE_SECONDS belongs
# to a process that died. Keep the stale time several heartbeats long and above the grader's timeout.
PARLA_HEARTBEAT_SECONDS = env_float("PARLA_HEARTBEAT_SECONDS", 10.0)
PARLA_STALE_SECONDS = env_float("PARLA_STALE_SECONDS", 60.0)
# Learner audio: each spoken answer kept as a WAV for the teacher, deleted after the retention period
# by `manage.py delete_expired_audio`.
PARLA_RECORD_AUDIO = env_bool("PARLA_RECORD_AUDIO", True)
PARLA_AUDIO_RETENTION_DAYS = env_int("PARLA_AUDIO_RETENTION_DAYS", 90)
# Capacity of one server process (README "Deployment"): sessions past the maximum are refused with a
# clear message, not slowed; a browser that reads nothing of what it is sent is closed (tutor.backpressure):
# paused by the transport for PARLA_SEND_STALL_SECONDS, or PARLA_SEND_QUEUE_BYTES waiting (~11 s of audio).
# 200: issue 14's target, and the step of bench/load.py's ladder whose added p99 stayed under 20 ms on
# 2 cores (AMD EPYC, Zen 5 at 2.6 GHz), the simulator and the learners on the same machine: +5.2 to
# +13.7 ms in five runs, 300 broke at +464 ms (docs/benchmarks.md, "what the fifth round's runs say").
# On slower machines of the same kind 200 did not hold (+3.3 s on a 2.45 GHz EPYC): a machine's number
# comes from its own run; there the loop's stalls are logged and shed new sessions (below).
PARLA_MAX_SESSIONS_PER_PROCESS = env_int("PARLA_MAX_SESSIONS_PER_PROCESS", 200)
PARLA_SEND_QUEUE_BYTES = env_int("PARLA_SEND_QUEUE_BYTES", 1024 * 1024)
PARLA_SEND_STALL_SECONDS = env_float("PARLA_SEND_STALL_SECONDS", 10.0)
# A pause of a server process's event loop pauses every learner's audio it relays: pauses this long or
# longer are logged as "event loop stalled" (tutor/loopwatch.py), once a minute with their count.
PARLA_LOOP_STALL_MS = env_float("PARLA_LOOP_STALL_MS", 100.0)
# New sessions are refused (at_capacity, as past the maximum) while the stalls of the last 10 s add up to
# this share of it, in at least 10 stalls; 0 turns it off. At 25 % a learner's audio stood still a
# quarter of the time: the process cannot take more learners on this machine (tutor/loopwatch.py).
PARLA_SHED_STALLED_PERCENT = env_float("PARLA_SHED_STALLED_PERCENT", 25.0)
# Operations (README "Production"): this process's metrics in the Prometheus text format on their own
# port (0: none), never the public one; and on SIGTERM, how long running placements may go on before
# they are handed over to reconnection (tutor/drain.py): the pages reconnect to another process and the
# placements continue there (PARLA_RESUME_SECONDS); handovers in progress finish first.
PARLA_METRICS_PORT = env_int("PARLA_METRICS_PORT", 0)
PARLA_METRICS_ADDRESS = env("PARLA_METRICS_ADDRESS", "127.0.0.1")
PARLA_DRAIN_SECONDS = env_float("PARLA_DRAIN_SECONDS", 1200.0)
# A placement outlives its connection (tutor/runtime/resumption.py): a learner whose socket drops (or
# whose process drains) may reconnect and continue the same placement, on any process, for this long;
# after it the placement ends as on leaving (the recovery sweep). 0: a dropped socket ends it at once.
PARLA_RESUME_SECONDS = env_float("PARLA_RESUME_SECONDS", 120.0)
