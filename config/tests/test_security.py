"""Security in the production shape: login throttling, response headers, HTTPS settings, the
websocket origin check (port included), and `check --deploy` under the README's production settings."""

import re
from html.parser import HTMLParser

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client, override_settings
from django.urls import reverse

from config.asgi import application
from config.tests.helpers import clean_env, read_settings, run_manage
from config.tests.test_readme import section
from config.websocket_origin import origin_allowed

pytestmark = pytest.mark.django_db


# --- login throttling (django-axes) -----------------------------------------------------------------


def attempt(client, username, password):
    return client.post(reverse("login"), {"username": username, "password": password})


def test_repeated_wrong_passwords_lock_the_account_out(settings, make_user):
    make_user("ana", learner=True, password="correct horse battery")
    make_user("bea", learner=True, password="correct horse battery")
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = attempt(client, "ana", "wrong")
        assert response.status_code == 200 and "didn't match" in response.content.decode()
    # The limit-th failure locks out: from now on even the right password is refused.
    assert attempt(client, "ana", "wrong").status_code == 429
    locked = attempt(client, "ana", "correct horse battery")
    assert locked.status_code == 429
    assert "Too many attempts" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    # Another learner on the same address is not locked out with her.
    assert attempt(Client(), "bea", "correct horse battery").status_code == 302


def test_a_successful_login_resets_the_count(settings, make_user):
    make_user("ana", learner=True, password="correct horse battery")
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        attempt(client, "ana", "wrong")
    assert attempt(client, "ana", "correct horse battery").status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attempt(client, "ana", "wrong").status_code == 200
    assert attempt(client, "ana", "correct horse battery").status_code == 302


# --- response headers ----------------------------------------------------------------------------


class InlineCode(HTMLParser):
    """Collects what a strict CSP would block in a page: inline scripts, styles, handlers."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and "src" not in attrs and attrs.get("type") != "application/json":
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style>")
        for name in attrs:
            if name == "style" or name.startswith("on"):
                self.found.append(f"{tag} {name}=")


@pytest.fixture
def pages(make_user):
    """name -> (user or None, url) for every page of the product."""
    learner = make_user("ana", learner=True)
    teacher = make_user("tomas", teacher=True, is_superuser=True)
    return {
        "home": (None, reverse("home")),
        "login": (None, reverse("login")),
        "tutor": (learner, reverse("tutor:session")),
        "history": (learner, reverse("assessments:history")),
        "teacher live": (teacher, reverse("tutor:teacher_live")),
        "admin": (teacher, reverse("admin:index")),
        "admin assessments": (teacher, reverse("admin:assessments_assessment_changelist")),
        "not found": (None, "/no-such-page/"),
    }


def test_every_page_has_the_csp_and_permissions_policy_and_nothing_inline(pages):
    for name, (user, url) in pages.items():
        client = Client()
        if user:
            client.force_login(user)
        response = client.get(url)
        assert response.status_code in (200, 404), (name, response.status_code)
        assert response["Permissions-Policy"].startswith("microphone=(self)"), name
        csp = dict(
            (d.split()[0], d.split()[1:]) for d in response["Content-Security-Policy"].split(";") if d.strip()
        )
        assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"], (name, csp)
        assert csp["connect-src"] == ["'self'"] and csp["frame-ancestors"] == ["'none'"], (name, csp)
        assert "unsafe" not in response["Content-Security-Policy"]
        parser = InlineCode()
        parser.feed(response.content.decode())
        assert parser.found == [], (name, parser.found)


def test_the_tutor_page_loads_its_code_and_worklets_from_static(pages):
    """What the CSP admits ('self') is what the page needs: its module and worklets are same-origin
    files under /static/ (a browser test runs the page itself with the policy on)."""
    client = Client()
    client.force_login(pages["tutor"][0])
    html = client.get(reverse("tutor:session")).content.decode()
    scripts = re.findall(r'<script type="module" src="([^"]+)"', html)
    worklets = re.findall(r'data-(?:capture|playback)-url="([^"]+)"', html)
    assert scripts == ["/static/tutor/session.js"]
    assert worklets == ["/static/tutor/capture-worklet.js", "/static/tutor/playback-worklet.js"]


@override_settings(SECURE_SSL_REDIRECT=True, SECURE_HSTS_SECONDS=3600, SECURE_HSTS_INCLUDE_SUBDOMAINS=True)
def test_https_redirect_and_hsts():
    insecure = Client().get(reverse("home"))
    assert insecure.status_code == 301 and insecure["Location"].startswith("https://")
    secure = Client().get(reverse("home"), secure=True)
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=3600; includeSubDomains"
    assert secure["Permissions-Policy"].startswith("microphone=(self)")


def production_env() -> dict[str, str]:
    """The variables of the README's Deployment example, placeholders filled in."""
    block = re.search(r"```sh\n(.*?)```", section("Deployment"), re.S).group(1)
    env = dict(line.split("=", 1) for line in block.strip().splitlines())
    env["SECRET_KEY"] = "k" * 20 + "-not-a-real-key-but-long-and-random-enough-0123456789"
    return {name: re.sub(r"<[^>]+>", "pw", value) for name, value in env.items()}


def test_https_settings_come_from_the_environment():
    env = production_env()
    s = read_settings(
        clean_env(**env),
        "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD",
        "SECURE_PROXY_SSL_HEADER", "SESSION_COOKIE_SECURE",
    )
    assert s == {
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "SESSION_COOKIE_SECURE": True,
    }
    plain = read_settings(
        clean_env(DEBUG="false", SECRET_KEY=env["SECRET_KEY"], ALLOWED_HOSTS="localhost", SECURE_SSL_REDIRECT="false"),
        "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
    )
    assert plain == {"SECURE_SSL_REDIRECT": False, "SECURE_HSTS_SECONDS": 0}


def test_check_deploy_is_clean_under_the_readme_production_settings():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=clean_env(**production_env()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    # And it does catch a production setting left out: HSTS.
    without_hsts = {k: v for k, v in production_env().items() if not k.startswith("SECURE_HSTS")}
    result = run_manage("check", "--deploy", env=clean_env(**without_hsts))
    assert "security.W004" in result.stdout + result.stderr


# --- the websocket origin check, port included ----------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("http://127.0.0.1:9999", "127.0.0.1:8000", False),  # another program on the same machine
        ("http://127.0.0.1", "127.0.0.1:8000", False),
        ("http://localhost:8000", "127.0.0.1:8000", False),
        ("https://localhost", "localhost", True),  # default ports: 443 for an https page
        ("https://localhost", "localhost:80", False),
        ("http://evil.example:8000", "evil.example:8000", False),  # DNS rebinding: not an allowed host
        ("null", "127.0.0.1:8000", False),
        (None, "127.0.0.1:8000", False),
        ("http://127.0.0.1:8000", None, False),
    ],
)
def test_origin_must_be_the_servers_own_host_and_port(origin, host, allowed):
    assert origin_allowed(origin, host) is allowed


@override_settings(CSRF_TRUSTED_ORIGINS=["https://parla.example.org"])
def test_a_trusted_origin_is_admitted_behind_a_proxy_that_rewrites_host():
    assert origin_allowed("https://parla.example.org", "web:8000")
    assert not origin_allowed("https://parla.example.org:8443", "web:8000")


async def handshake(headers) -> bool:
    communicator = WebsocketCommunicator(application, "/ws/tutor/", headers=headers)
    try:
        connected, _ = await communicator.connect()
        return connected
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_page_on_another_port_cannot_open_the_socket(learner_user, session_cookie_headers):
    from asgiref.sync import sync_to_async

    own = await sync_to_async(session_cookie_headers)(learner_user)  # Host and Origin 127.0.0.1:8000
    other_port = await sync_to_async(session_cookie_headers)(learner_user, origin="http://127.0.0.1:9999")
    assert await handshake(own)
    assert not await handshake(other_port)
    assert not await handshake([(k, v) for k, v in own if k != b"origin"])


def test_authenticate_without_a_request_still_works(make_user):
    """Management commands and the shell call `authenticate()` with no request: not throttled."""
    from django.contrib.auth import authenticate

    user = make_user("ana", learner=True, password="correct horse battery")
    assert authenticate(username="ana", password="correct horse battery") == user
    assert authenticate(username="ana", password="wrong") is None
