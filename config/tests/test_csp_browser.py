"""The Content-Security-Policy in a real browser: the tutor page runs under it without one violation.

Headless Chromium (fake microphone) logs in, opens the tutor page and starts a session against the
simulator: the ES modules, both AudioWorklets (capture and playback) and the websocket all load under
the policy the server sends, and the browser reports no `securitypolicyviolation`.
"""

from __future__ import annotations

import pytest

from tutor.tests.browser_support import browser_output, chromium, fake_mic_wav, live_server, log_in, wait_for_js  # noqa: F401

pytestmark = pytest.mark.browser

RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(`${e.effectiveDirective} blocked ${e.blockedURI}`));
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("csp"), true_level="B1", pace=0.5) as server:
        yield server


def test_tutor_page_runs_under_the_csp(chromium, server, browser_output):
    context = chromium.new_context()
    page = context.new_page()
    page.add_init_script(RECORD_VIOLATIONS)
    console = []
    page.on("console", lambda msg: console.append(msg.text))
    policies = []
    page.on("response", lambda r: policies.append(r.headers.get("content-security-policy")) if r.url.endswith("/session/") else None)
    try:
        log_in(page, server)
        page.wait_for_selector("#tutor[data-connection='connected']", timeout=15_000)  # the socket: connect-src
        page.get_by_role("button", name="Start").click()
        # The capture worklet streams the microphone; the playback worklet plays the tutor.
        wait_for_js(page, "Number(document.querySelector('#tutor').dataset.framesSent) >= 5", timeout=30_000)
        wait_for_js(page, "Number(document.querySelector('#tutor').dataset.framesReceived) > 0", timeout=30_000)
        page.wait_for_selector(".utterance-tutor .utterance-text:not(:empty)", timeout=30_000)
        assert page.evaluate("window.__csp") == []
        page.goto(f"{server.url}/history/")
        assert page.evaluate("window.__csp") == []
    except Exception:
        page.screenshot(path=str(browser_output / "csp-failure.png"), full_page=True)
        print("--- browser console ---", *console[-40:], sep="\n")
        raise
    finally:
        context.close()
    assert policies and all(p and "script-src 'self'" in p for p in policies), policies
    assert not [line for line in console if "Content Security Policy" in line]
