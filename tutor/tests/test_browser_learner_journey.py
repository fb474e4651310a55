"""A learner's journeys off the straight path, in a real browser (issue 24): the history chart with a
session that ended early, the tutor page on a phone after Start, a second tab, a reload mid-session.

A live Parla server (subprocess, its own SQLite) with the simulator as upstream (pace 0); Debian's
Chromium with a silent fake microphone, so the tutor speaks and nobody barges in. Screenshots go to
test-output/browser/.
"""

from __future__ import annotations

import re
import wave

import pytest

from tutor.tests.browser_support import (  # noqa: F401 (fixtures)
    browser_output,
    chromium,
    live_server,
    log_in,
    wait_for_js,
)

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}

# Two sessions on one day: B2 in full at 09:05, then "at least A1" when the learner left at 17:40.
HISTORY = """
from datetime import timedelta
from django.utils import timezone
from assessments.models import Assessment, Learner
from assessments.tests.factories import make_session_with_assessment
learner = Learner.objects.get(user__username="ana")
day = timezone.localtime().replace(hour=9, minute=5, second=0, microsecond=0) - timedelta(days=1)
_, full = make_session_with_assessment(learner, level="B2", status="delivered")
_, partial = make_session_with_assessment(learner, level="A1", status="delivery_failed")
Assessment.objects.filter(pk=full.pk).update(created_at=day)
Assessment.objects.filter(pk=partial.pk).update(created_at=day.replace(hour=17, minute=40), partial=True)
print(full.pk, partial.pk)
"""


@pytest.fixture(scope="module")
def fake_mic_wav(tmp_path_factory):
    """A silent microphone: the tutor's line is not cut by a learner talking over it."""
    path = tmp_path_factory.mktemp("mic") / "silence.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        w.writeframes(b"\0\0" * 24000)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("learner-journey"), true_level="B1", pace=0) as server:
        yield server


@pytest.fixture
def context(chromium, request):
    ctx = chromium.new_context(viewport=getattr(request, "param", DESKTOP))
    try:
        yield ctx
    finally:
        ctx.close()


def start_session(page) -> None:
    """Press Start and wait until the tutor has said something."""
    page.wait_for_selector("#tutor[data-connection='connected']", timeout=15_000)
    page.get_by_role("button", name=re.compile("^Start")).click()
    page.wait_for_selector(".utterance-tutor .utterance-text:not(:empty)", timeout=30_000)


def in_view(page, selector: str) -> bool:
    """Is the element's box wholly inside the window, as it is scrolled now?"""
    return page.evaluate(
        """(sel) => { const r = document.querySelector(sel).getBoundingClientRect();
                      return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight; }""",
        selector,
    )


@pytest.mark.parametrize("context", [PHONE, DESKTOP], ids=["phone", "desktop"], indirect=True)
def test_history_chart_shows_a_partial_result_apart(context, server, browser_output):
    """Finding 6: "at least A1" is drawn apart and does not pull the line; its status is not a
    delivery failure; the x axis shows times when both sessions were on one day."""
    if not hasattr(server, "history"):
        server.history = [int(pk) for pk in server.query(HISTORY).split()]
    full, partial = server.history
    page = context.new_page()
    log_in(page, server, "/history/")
    point = page.locator(f"circle[data-assessment='{partial}']")
    assert "chart-point-partial" in point.get_attribute("class")
    assert "at least A1" in point.locator("title").text_content()
    assert page.locator(f"circle[data-assessment='{full}']").get_attribute("class") == "chart-point"
    # The line does not fall to A1: it joins the full results only (here one, so there is no line).
    assert page.locator("#level-chart polyline").count() == 0
    dates = page.locator("#level-chart .chart-date").all_text_contents()
    assert [re.search(r"\d{2}:\d{2}$", d).group() for d in dates] == ["09:05", "17:40"]
    status = page.locator(f"tr[data-assessment='{partial}'] td[data-label='Status']").inner_text()
    assert "Delivery failed" not in status and "Provisional" in status
    assert page.get_by_text("provisional \"at least\" level").is_visible()
    page.locator("#level-chart").scroll_into_view_if_needed()
    page.screenshot(path=browser_output / f"history-partial-{page.viewport_size['width']}.png", full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]


@pytest.mark.parametrize("context", [PHONE, DESKTOP], ids=["phone", "desktop"], indirect=True)
def test_after_start_the_conversation_is_on_screen(context, server, browser_output):
    """Finding 8: after Start the state, the tutor's current line and the answer box are visible
    without scrolling by hand, and the page still scrolls."""
    page = context.new_page()
    log_in(page, server)
    start_session(page)
    wait_for_js(page, "!document.querySelector('#answer-text').disabled", timeout=30_000)
    width = page.viewport_size["width"]
    page.screenshot(path=browser_output / f"learner-session-after-start-{width}.png")
    for selector in ("#turn-status", ".utterance-tutor:last-of-type", "#answer-text"):
        assert in_view(page, selector), selector
    # The page scrolls: back to the top (the warm-up and the header) and down again.
    page.evaluate("window.scrollTo(0, 0)")
    assert page.evaluate("window.scrollY") == 0
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    assert page.evaluate("document.documentElement.scrollHeight") <= page.viewport_size["height"] or page.evaluate("window.scrollY") > 0
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.get_by_role("button", name="Stop").click()
    page.wait_for_selector("#tutor[data-phase='ended']", timeout=30_000)


def test_a_second_tab_takes_over_only_on_start_and_the_first_says_so(context, server):
    """Finding 7: opening the page in a second tab ends nothing; Start there takes the session over
    (the new tab said it would); the tab that lost its session says so and stops saying the tutor speaks."""
    first = context.new_page()
    log_in(first, server)
    start_session(first)
    second = context.new_page()
    second.goto(f"{server.url}/session/")
    second.wait_for_selector("#tutor[data-connection='connected']", timeout=15_000)
    notice = second.locator("#notice-text")
    notice.wait_for(timeout=5_000)
    assert "running in another window" in notice.inner_text()
    assert second.locator("#start-button").inner_text() == "Start here"
    # The first tab goes on (had opening the page superseded it, the close would come within a moment).
    with pytest.raises(Exception):
        first.wait_for_selector("#tutor[data-connection='closed']", timeout=2_000)
    assert first.get_attribute("#tutor", "data-phase") == "running"

    second.get_by_role("button", name="Start here").click()
    first.wait_for_selector("#tutor[data-phase='refused']", timeout=15_000)
    assert "started a session in another window" in first.locator("#notice-text").inner_text()
    assert first.locator("#turn-status").inner_text() == "Stopped: you started a session in another window."
    second.wait_for_selector(".utterance-tutor .utterance-text:not(:empty)", timeout=30_000)
    assert second.get_attribute("#tutor", "data-phase") == "running"
    second.get_by_role("button", name="Stop").click()
    second.wait_for_selector("#tutor[data-phase='ended']", timeout=30_000)


def test_reloading_mid_session_says_the_session_ended(context, server):
    """Finding 9: a reload mid-session comes back to the start screen with a word about the session."""
    page = context.new_page()
    log_in(page, server)
    start_session(page)
    page.reload()
    page.wait_for_selector("#tutor[data-connection='connected']", timeout=15_000)
    notice = page.locator("#notice-text")
    assert notice.is_visible()
    assert "Your last session ended when this page was reloaded" in notice.inner_text()
    assert "running in another window" not in notice.inner_text()
    # ...and once a session ended the usual way, a reload has nothing to say.
    start_session(page)
    page.get_by_role("button", name="Stop").click()
    page.wait_for_selector("#tutor[data-phase='ended']", timeout=30_000)
    page.reload()
    page.wait_for_selector("#tutor[data-connection='connected']", timeout=15_000)
    assert not page.locator("#notice-text").is_visible()
