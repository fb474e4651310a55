"""The teachers' desk in a real browser: the assessment review page and the live view, on a 390 px
phone and on a desktop, with screenshots in `browser/` of the test output folder.

A live Parla server (subprocess, its own SQLite) holds one reviewed-to-be assessment with a recorded
answer; a teacher logs in through the login page. The live view gets a session snapshot through the
Redis channel layer (`manage.py shell` announces it, as a running session's process would), so that
part needs REDIS_URL; without it the view is checked empty.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from tutor.tests.browser_support import (  # noqa: F401 (fixtures)
    browser_output,
    chromium,
    fake_mic_wav,
    live_server,
    log_in,
    wait_for_js,
)

pytestmark = pytest.mark.browser

TEACHER, TEACHER_PASSWORD = "tomas", "review-desk-teacher-pw-1"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

SETUP = f"""
from django.contrib.auth import get_user_model
from assessments.models import Assessment, Learner, Turn
from assessments.roles import ensure_teachers_group
from assessments.services import save_turn_audio
from assessments.tests.factories import make_session_with_assessment
teacher = get_user_model().objects.create_user({TEACHER!r}, password={TEACHER_PASSWORD!r}, is_staff=True)
teacher.groups.add(ensure_teachers_group())
learner = Learner.objects.get(user__username="ana")
session, assessment = make_session_with_assessment(learner)
Assessment.objects.filter(pk=assessment.pk).update(criteria={{
    "range": "B1", "fluency": {{"level": "B2", "evidence": "kept talking about her weekend for a long while", "confidence": 0.7}},
}})
turn = session.turns.get(role="learner")
save_turn_audio(turn.pk, bytes(24000 * 2))
print(assessment.pk, session.pk)
"""

ANNOUNCE = """
from asgiref.sync import async_to_sync
from tutor.live import announce
async_to_sync(announce)({{
    "session_id": {session}, "learner": "ana", "language": "es", "state": "summary", "level": "B2",
    "ladder": {{"A1": "sustained", "A2": "sustained", "B1": "sustained", "B2": "breakdown", "C1": "untested", "C2": "untested"}},
    "probes": 8, "assessment": {{"id": {assessment}, "level": "B1", "status": "graded", "partial": False}},
}})
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    redis = os.environ.get("REDIS_URL", "")
    extra = {"REDIS_URL": redis, "CHANNELS_PREFIX": f"desk-browser-{os.getpid()}"} if redis else {}
    extra["MEDIA_ROOT"] = str(tmp_path_factory.mktemp("media"))
    with live_server(tmp_path_factory.mktemp("desk"), true_level=None, extra_env=extra) as server:
        assessment, session = server.query(SETUP).split()
        yield server, int(assessment), int(session)


@pytest.fixture
def teacher_page(chromium, server, request):
    """open(path) -> a page of the teacher, logged in through the login page and landed on `path`, in a
    browser window of the test's `viewport`."""
    live = server[0]
    context = chromium.new_context(viewport=request.node.callspec.params["viewport"])

    def open_(path):
        page = context.new_page()
        log_in(page, dataclasses.replace(live, username=TEACHER, password=TEACHER_PASSWORD), path)
        return page

    try:
        yield open_
    finally:
        context.close()


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_assessment_review_page(teacher_page, server, browser_output, viewport):
    _, assessment, _ = server
    page = teacher_page(f"/admin/assessments/assessment/{assessment}/change/")
    assert page.locator(".review-ladder tr[data-verdict='tried']").count() == 2  # B1 and B2 answered
    assert page.locator(".review-criteria td", has_text="not assessed").count() == 3
    assert page.get_by_text("kept talking about her weekend").is_visible()
    audio = page.locator(".review-conversation audio")
    assert audio.count() == 1
    # The player loads the recording through the guarded view (a real WAV, one second long).
    audio.evaluate("a => { a.preload = 'auto'; a.load(); }")
    wait_for_js(page, "document.querySelector('.review-conversation audio').readyState >= 1", timeout=10_000)
    assert abs(audio.evaluate("a => a.duration") - 1.0) < 0.01
    page.get_by_label("Teacher level").select_option("B2")
    page.screenshot(path=browser_output / f"review-assessment-{viewport['width']}.png", full_page=True)
    if viewport is PHONE:
        assert no_horizontal_scroll(page)
        return
    # On the desktop the teacher saves the review: the list shows it, one level apart from the machine.
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url("**/admin/assessments/assessment/")
    row = page.locator("#result_list tbody tr").first
    assert "one apart" in row.inner_text() and "B2" in row.inner_text()
    page.screenshot(path=browser_output / "review-list-1280.png", full_page=True)


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_live_view(teacher_page, server, browser_output, viewport):
    live, assessment, session = server
    page = teacher_page("/teacher/live/")
    wait_for_js(page, "document.getElementById('live-status').textContent.startsWith('Watching')", timeout=15_000)
    if os.environ.get("REDIS_URL"):
        live.query(ANNOUNCE.format(session=session, assessment=assessment))
        row = page.locator(f"#live-session-{session}")
        row.wait_for(timeout=15_000)
        assert row.locator("td[data-label='Language']").inner_text() == "Spanish"
        assert "B1 (assessed)" in row.locator("td[data-label='Level']").inner_text()
        link = row.locator("td[data-label='Assessment'] a")
        assert link.get_attribute("href") == f"/admin/assessments/assessment/{assessment}/change/"
    page.screenshot(path=browser_output / f"live-view-{viewport['width']}.png", full_page=True)
    if viewport is PHONE:
        assert no_horizontal_scroll(page)
    assert page.get_by_role("link", name="Admin", exact=True).is_visible()
