"""The teachers' live view in headless Chromium, its /ws/teacher/live/ answered by the test (Playwright).

The view shares the tutor page's reconnecting socket: snapshots become table rows, a lost connection
is retried, and a refusal (4401/4403) is explained and not retried.
"""

from __future__ import annotations

import json

import pytest

from tutor.tests.browser_support import (  # noqa: F401 (fixtures)
    chromium,
    fake_mic_wav,
    live_server,
    log_in,
    page_pause,
)
from tutor.testing.waits import wait_until

pytestmark = pytest.mark.browser

TEACHER, PASSWORD = "tomas", "live-view-teacher-pw-1"


def snapshot(**changes):
    return {"session_id": 7, "learner": "ana", "language": "es", "state": "listening", "level": "A2",
            "ladder": {"A1": "sustained", "A2": "current"}, "probes": 2, "assessment": None, **changes}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("live-server"), true_level=None) as server:
        server.query(
            "from django.contrib.auth import get_user_model; from assessments.roles import ensure_teachers_group; "
            f"u = get_user_model().objects.create_user({TEACHER!r}, password={PASSWORD!r}, is_staff=True); "
            "u.groups.add(ensure_teachers_group())"
        )
        yield server


@pytest.fixture
def live_page(chromium, server):
    """The live view, logged in as a teacher; yields (page, the sockets it opened so far)."""
    context = chromium.new_context()
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sockets = []
    page.route_web_socket("**/ws/teacher/live/", lambda ws: sockets.append(ws))
    log_in(page, server, "/teacher/live/", username=TEACHER, password=PASSWORD)
    page.wait_for_selector("#live-status >> text=Watching live sessions.")
    yield page, sockets
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_snapshots_become_rows_and_a_lost_connection_is_retried(live_page):
    page, sockets = live_page
    sockets[-1].send(json.dumps({"type": "session", "session": snapshot()}))
    page.wait_for_selector("#live-session-7[data-state='listening']")
    assert page.text_content("#live-session-7").startswith("anaes")
    assert page.locator("#live-empty").count() == 0

    sockets[-1].close(code=1011, reason="server restart")
    page.wait_for_selector("#live-status[data-kind='warning'] >> text=reconnecting")
    wait_until(lambda: len(sockets) == 2, 10, "a second connection", pause=page_pause(page))
    page.wait_for_selector("#live-status >> text=Watching live sessions.")
    # The new connection's snapshots replace the session's row.
    sockets[-1].send(json.dumps({"type": "session", "session": snapshot(state="tutor_speaking", level="B1")}))
    page.wait_for_selector("#live-session-7[data-state='tutor_speaking']")
    assert page.locator("#live-sessions tr").count() == 1
    assert "tutor speaking" in page.text_content("#live-session-7")


@pytest.mark.parametrize("code", [4401, 4403])
def test_refusals_are_explained_and_not_retried(live_page, code):
    page, sockets = live_page
    sockets[-1].close(code=code, reason="refused")
    page.wait_for_selector("#live-status[data-kind='error'] >> text=for teachers")
    page.wait_for_timeout(1500)  # longer than the first reconnect delay
    assert len(sockets) == 1
