"""End to end in a real browser: a learner speaks with the tutor in demo mode and is told the truth.

Debian's headless Chromium with a fake microphone (a WAV of speech-like bursts) opens the tutor page
of a live Parla server (Daphne, subprocess) whose upstream is `manage.py realtime_simulator` with a
simulated learner of true level B1. The learner logs in through the login page and presses Start;
the page's audio worklet streams the fake microphone, the simulator's VAD hears the bursts as turns,
and the tutor answers each. The demo has no speech recognizer: timing shows fluency, not what was
said, so no spoken answer sustains a level (issue 28; before, the bursts' fluency alone climbed the
ladder to B1). After a few answers the learner presses Stop: the card says "Not rated" and why, and
that written answers can be placed. Screenshots go to test-output/browser/.

Skip it locally with `-m "not browser"`; CI runs it (scripts/test installs Chromium).
"""

from __future__ import annotations

import shutil

import pytest

from assessments.cefr import LEVELS
from tutor.tests.browser_support import (  # noqa: F401 (fixtures)
    browser_output,
    chromium,
    live_server,
    make_answers_wav,
    log_in,
    wait_for_js,
    simulator_command_exists,
)

pytestmark = pytest.mark.browser

TRUE_LEVEL = "B1"
STEP_TIMEOUT_MS = 60_000
ASSESSMENT_TIMEOUT_MS = 150_000


@pytest.fixture(scope="module")
def fake_mic_wav(tmp_path_factory):
    """The microphone of a learner of TRUE_LEVEL: each answer has that level's fluency (in demo mode no
    words are known: the rater measures the fluency and rates no level); 3 s of silence after each is longer than turn detection waits at any level (1.2 s
    at A1-A2; from B1 semantic VAD with low eagerness, 2 s in the simulator), so each is one turn."""
    return make_answers_wav(tmp_path_factory.mktemp("mic") / "answers.wav", TRUE_LEVEL)


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser_output):
    if not simulator_command_exists():
        pytest.fail("tutor/management/commands/realtime_simulator.py is missing")
    workdir = tmp_path_factory.mktemp("e2e")
    # The simulator's default pace: it generates the tutor's speech faster than real time, like the
    # API; the browser still plays it in real time, and reports what it really played.
    # The fake microphone loops 1.5 s bursts and talks over every reply about 0.6 s in: with the
    # gpt-realtime-2 shape (a spoken preamble before the call) each reply would be cut before it
    # records the answer, so the simulator's replies here make the call first, then speak.
    with live_server(workdir, true_level=TRUE_LEVEL, probe_shape="call_answer") as server:
        try:
            yield server
        finally:
            shutil.copy(server.log_path, browser_output / "server.log")


def level_reached(page) -> int:
    return LEVELS.index(page.get_attribute("#tutor", "data-level"))


def test_learner_who_only_speaks_in_demo_mode_gets_no_level_and_is_told_why(chromium, server, browser_output):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    console = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
    try:
        log_in(page, server)
        page.wait_for_selector("#tutor[data-connection='connected']", timeout=15_000)
        assert page.get_attribute("#tutor", "data-demo") == "true"

        page.get_by_role("button", name="Start").click()

        # Microphone audio leaves the page in binary frames...
        wait_for_js(page, "Number(document.querySelector('#tutor').dataset.framesSent) >= 20", timeout=STEP_TIMEOUT_MS)
        assert page.get_attribute("#tutor", "data-mic") == "on"
        # ...the tutor speaks (its transcript and its audio arrive)...
        page.wait_for_selector(".utterance-tutor .utterance-text:not(:empty)", timeout=STEP_TIMEOUT_MS)
        wait_for_js(page, "Number(document.querySelector('#tutor').dataset.framesReceived) > 0", timeout=STEP_TIMEOUT_MS)
        # ...and the server heard the learner: the simulator's VAD turned the frames into a turn,
        # whose transcript comes back to the page.
        page.wait_for_selector(".utterance-learner .utterance-text:not(:empty)", timeout=STEP_TIMEOUT_MS)

        # Several spoken answers are heard and answered; none sustains a level.
        wait_for_js(page, "document.querySelectorAll('.utterance-learner').length >= 3", timeout=ASSESSMENT_TIMEOUT_MS)
        assert level_reached(page) == 0
        assert page.get_attribute("#ladder li[data-level='A1']", "data-state") == "current"
        page.screenshot(path=str(browser_output / "session.png"), full_page=True)

        # Stop: no level, and the learner is told the demo cannot understand speech.
        page.locator("#stop-button").click()
        page.wait_for_selector("#assessment:not([hidden])", timeout=STEP_TIMEOUT_MS)
        assert page.get_attribute("#assessment", "data-level") == ""
        assert page.text_content("#assessment-level-name") == "Not rated"
        summary = page.text_content("#assessment-summary")
        assert "cannot understand speech" in summary and "Written answers can be placed" in summary
        page.locator("#assessment").scroll_into_view_if_needed()
        page.screenshot(path=str(browser_output / "assessment.png"), full_page=True)
        page.locator("#assessment").screenshot(path=str(browser_output / "assessment-card.png"))

        page.wait_for_selector("#tutor[data-state='ended']", timeout=STEP_TIMEOUT_MS)
    except Exception:
        page.screenshot(path=str(browser_output / "failure.png"), full_page=True)
        print("--- browser console ---", *console[-40:], sep="\n")
        print("--- server log (tail) ---", server.log()[-6000:], sep="\n")
        raise
    finally:
        context.close()

    # Server-side evidence, from the live server's database: learner turns from audio (they carry
    # the upstream's input item id; written answers have none) and the stored assessment.
    audio_turns = int(
        server.query(
            "from assessments.models import Turn; "
            "print(Turn.objects.filter(role='learner').exclude(item_id='').count())"
        )
    )
    assert audio_turns >= 1
    stored = server.query(
        "from assessments.models import Assessment; a = Assessment.objects.get(); print(repr(a.level), a.status)"
    )
    assert stored.split() == ["''", "not_rated"]
