"""The tutor page's JavaScript against a scripted /ws/tutor/ (Playwright routes the websocket).

These drive the real page in Debian's headless Chromium, with the fake microphone, but answer its
websocket from the test: so each part of the wire protocol the page implements (mic frames, transcript,
ladder, playback with flush and reports, reconnecting, close codes, written answers) is checked on its
own, independently of the server. The end-to-end run against the real consumer and the simulator is
test_browser.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tutor.tests.browser_support import (  # noqa: F401 (fixtures)
    browser_output,
    chromium,
    fake_mic_wav,
    live_server,
    log_in,
    page_pause,
    wait_for_js,
)
from tutor.testing.waits import wait_until

pytestmark = pytest.mark.browser

READY = {"type": "state", "state": "ready", "demo": True, "language": "es"}


class ScriptedTutor:
    """Stands in for the server side of /ws/tutor/: records what the page sends, sends what we say."""

    def __init__(self, page, on_connect=(READY,)):
        self.page = page
        self.on_connect = list(on_connect)
        self.sockets = []
        self.messages: list[dict] = []
        self.frames: list[int] = []  # sizes of binary frames
        self.audio = bytearray()  # their content (the first few seconds)
        page.route_web_socket("**/ws/tutor/", self._connect)

    def _connect(self, ws):
        self.sockets.append(ws)
        ws.on_message(self._receive)
        for event in self.on_connect:
            ws.send(json.dumps(event))

    def _receive(self, message):
        if isinstance(message, (bytes, bytearray)):
            self.frames.append(len(message))
            if len(self.audio) < 24000 * 2 * 8:
                self.audio.extend(message)
        else:
            self.messages.append(json.loads(message))

    @property
    def ws(self):
        return self.sockets[-1]

    def send(self, *events):
        for event in events:
            self.ws.send(json.dumps(event) if isinstance(event, dict) else event)

    def received(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]

    def wait(self, predicate, timeout=10.0, what="condition"):
        try:
            return wait_until(predicate, timeout, what, pause=page_pause(self.page))
        except AssertionError as exc:
            raise AssertionError(f"{exc}; received {self.messages[-10:]}") from None


def frame_levels(pcm: bytes) -> list[float]:
    """RMS (0..1) of each 100 ms frame of PCM16."""
    samples = np.frombuffer(bytes(pcm), "<i2").astype(float) / 32768
    return [float(np.sqrt(np.mean(f**2))) for f in np.split(samples[: len(samples) // 2400 * 2400], len(samples) // 2400)]


def dominant_hz(pcm: bytes) -> float:
    """The strongest frequency of the loudest 100 ms frame (the fake voice's fundamental is ~200 Hz)."""
    levels = frame_levels(pcm)
    i = int(np.argmax(levels))
    frame = np.frombuffer(bytes(pcm), "<i2")[i * 2400 : (i + 1) * 2400].astype(float)
    spectrum = np.abs(np.fft.rfft(frame * np.hanning(len(frame))))
    return float(np.fft.rfftfreq(len(frame), 1 / 24000)[np.argmax(spectrum)])


def tone(ms: int, freq=330.0, rate=24000) -> bytes:
    t = np.arange(int(rate * ms / 1000)) / rate
    return (0.2 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2").tobytes()


def chunks(pcm: bytes, ms=100):
    step = 48 * ms
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


@pytest.fixture(scope="module")
def page_server(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("page-server"), true_level=None) as server:
        yield server


@pytest.fixture
def page(chromium, page_server):
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def open_tutor(page, server, **kwargs):
    tutor = ScriptedTutor(page, **kwargs)
    log_in(page, server)
    page.wait_for_selector("#tutor[data-connection='connected']")
    return tutor


def start(page, tutor):
    page.get_by_role("button", name="Start").click()
    tutor.wait(lambda: tutor.received("session.start"), what="session.start")
    tutor.send({"type": "state", "state": "connecting"}, {"type": "state", "state": "listening"})
    page.wait_for_selector("#tutor[data-state='listening']")


def test_start_sends_session_start_and_100ms_mic_frames(page, page_server):
    tutor = open_tutor(page, page_server)
    assert tutor.frames == []  # nothing is sent before Start
    start(page, tutor)

    assert tutor.received("session.start")[0].get("language") == "es"
    tutor.wait(lambda: len(tutor.frames) >= 10, what="mic frames")
    assert set(tutor.frames) == {4800}  # 100 ms of 24 kHz PCM16 each
    # It is the fake microphone's audio: speech bursts (well above the VAD's -35 dBFS) and pauses.
    tutor.wait(lambda: len(tutor.audio) >= 24000 * 2 * 4, what="4 s of audio")
    levels = frame_levels(tutor.audio)
    assert max(levels) > 0.05 and min(levels) < 0.01
    assert 150 <= dominant_hz(tutor.audio) <= 250
    sent = int(page.get_attribute("#tutor", "data-frames-sent"))
    assert sent >= 10
    assert page.get_attribute("#tutor", "data-mic") == "on"
    # The fake microphone's speech moves the level meter.
    wait_for_js(page, "Number(document.querySelector('#mic-meter').getAttribute('aria-valuenow')) > 20")


def test_transcript_ladder_assessing_and_assessment_card(page, page_server):
    tutor = open_tutor(page, page_server)
    start(page, tutor)

    tutor.send(
        {"type": "transcript", "role": "tutor", "item_id": "item_1", "text": "¡Hola! ", "final": False},
        {"type": "transcript", "role": "tutor", "item_id": "item_1", "text": "¿Cómo estás?", "final": False},
    )
    page.wait_for_selector("li[data-item-id='item_1'] >> text=¡Hola! ¿Cómo estás?")
    tutor.send({"type": "transcript", "role": "tutor", "item_id": "item_1", "text": "¡Hola! ¿Cómo estás hoy?", "final": True})
    tutor.send({"type": "transcript", "role": "learner", "item_id": "", "text": "Muy bien, gracias.", "final": True})
    page.wait_for_selector("li[data-item-id='item_1'][data-final='true'] >> text=¡Hola! ¿Cómo estás hoy?")
    page.wait_for_selector(".utterance-learner >> text=Muy bien, gracias.")

    ladder = {"A1": "sustained", "A2": "sustained", "B1": "current", "B2": "untested", "C1": "untested", "C2": "untested"}
    tutor.send({"type": "level", "level": "B1", "ladder": ladder})
    page.wait_for_selector("#ladder li[data-level='B1'][aria-current='step'][data-state='current']")
    assert page.get_attribute("#ladder li[data-level='A2']", "data-state") == "sustained"
    assert page.text_content("#level-now") == "B1"

    tutor.send({"type": "state", "state": "assessing"}, {"type": "assessing", "progress": 0.5, "elapsed_ms": 3000})
    page.wait_for_selector("#assessing:not([hidden])")
    assert page.get_attribute("#turn-status", "data-state") == "assessing"
    assert page.is_disabled("#answer-text")

    tutor.send(
        {
            "type": "assessment", "id": 42, "level": "B1", "status": "delivered", "partial": False,
            "criteria": {"range": "B1", "accuracy": "A2"}, "summary": "You handle everyday topics well.",
        },
        {"type": "state", "state": "ended"},
    )  # fmt: skip
    page.wait_for_selector("#assessment:not([hidden])")
    assert page.text_content("#assessment-level") == "B1"
    assert page.text_content("#assessment-level-name") == "Threshold"
    assert "You handle everyday topics well." in page.text_content("#assessment")
    assert page.text_content("[data-criterion='accuracy'] dd").strip() == "A2"
    assert page.get_attribute("#assessment-link", "href") == "/history/42/"
    page.wait_for_selector("#assessing", state="hidden")
    page.wait_for_selector("#tutor[data-state='ended']")
    assert page.is_enabled("#start-button") and page.text_content("#start-button") == "Start a new session"
    # The microphone is released and no more frames go out after the session ended.
    count = len(tutor.frames)
    page.wait_for_timeout(400)
    assert len(tutor.frames) == count


def test_playback_reports_what_was_played_and_flush_answers_at_once(page, page_server):
    tutor = open_tutor(page, page_server)
    start(page, tutor)

    # One short item played to its end: the page reports its full length.
    tutor.send({"type": "audio.start", "item_id": "item_a", "voice": "marin", "role": "tutor"})
    tutor.send(*chunks(tone(600)))
    tutor.send({"type": "audio.end", "item_id": "item_a"})
    report = tutor.wait(
        lambda: [r for r in tutor.received("playback.report") if r["item_id"] == "item_a" and r["played_ms"] >= 600],
        what="the final playback.report of item_a",
    )[0]
    assert report["played_ms"] == 600
    # It reported its start, then its end: the server knows what the learner hears, and when it stops.
    reports = [r for r in tutor.received("playback.report") if r["item_id"] == "item_a"]
    assert reports[0]["kind"] == "start" and reports[0]["played_ms"] == 0
    assert reports[-1]["kind"] == "end" and reports[-1]["played_ms"] == 600
    assert {r["kind"] for r in reports[1:-1]} <= {"progress"}

    # A long item, flushed while it plays: the answer names it and how much of it was heard.
    tutor.send({"type": "audio.start", "item_id": "item_b", "voice": "marin", "role": "tutor"})
    tutor.send(*chunks(tone(5000)))
    wait_for_js(page, "document.querySelector('#tutor').dataset.playing === 'true'")
    page.wait_for_timeout(700)
    tutor.send({"type": "playback.flush", "request_id": "flush_1"})
    flushed = tutor.wait(lambda: tutor.received("playback.flushed"), timeout=2, what="playback.flushed")[0]
    assert flushed["request_id"] == "flush_1"
    assert flushed["item_id"] == "item_b"
    assert 300 <= flushed["played_ms"] <= 3000
    # Frames of the flushed item that were still in flight are not played.
    tutor.send(*chunks(tone(1000)))
    page.wait_for_timeout(500)
    assert page.get_attribute("#tutor", "data-playing") == "false"
    later = [r for r in tutor.received("playback.report") if r["item_id"] == "item_b"]
    assert all(r["played_ms"] <= flushed["played_ms"] for r in later)


def test_flush_before_any_audio_still_answers(page, page_server):
    tutor = open_tutor(page, page_server)
    start(page, tutor)
    tutor.send({"type": "playback.flush", "request_id": "flush_9"})
    flushed = tutor.wait(lambda: tutor.received("playback.flushed"), timeout=2, what="playback.flushed")[0]
    assert flushed == {"type": "playback.flushed", "request_id": "flush_9", "item_id": None, "played_ms": 0}


def test_written_answer_sends_answer_text_with_the_keyboard(page, page_server):
    tutor = open_tutor(page, page_server)
    start(page, tutor)
    box = page.get_by_label("Answer in writing")
    box.fill("Vivo en Sevilla con mi hermana.")
    box.press("Enter")
    tutor.wait(lambda: tutor.received("answer.text"), what="answer.text")
    assert tutor.received("answer.text")[0]["text"] == "Vivo en Sevilla con mi hermana."
    assert box.input_value() == ""


def test_stop_sends_session_stop_and_releases_the_microphone(page, page_server):
    tutor = open_tutor(page, page_server)
    start(page, tutor)
    tutor.wait(lambda: tutor.frames, what="mic frames")
    page.get_by_role("button", name="Stop").click()
    tutor.wait(lambda: tutor.received("session.stop"), what="session.stop")
    page.wait_for_selector("#mic-state >> text=off")
    count = len(tutor.frames)
    page.wait_for_timeout(400)
    assert len(tutor.frames) == count


def test_unexpected_close_reconnects_with_a_message(page, page_server):
    tutor = open_tutor(page, page_server)
    start(page, tutor)
    tutor.ws.close(code=1011, reason="server restart")
    page.wait_for_selector("#tutor[data-connection='reconnecting']")
    assert "reconnecting" in page.text_content("#notice").lower()
    tutor.wait(lambda: len(tutor.sockets) == 2, what="a second connection")
    page.wait_for_selector("#tutor[data-connection='connected']")
    # The old session is over: the page says so, and the learner starts again explicitly, on the
    # new connection.
    assert "interrupted" in page.text_content("#notice")
    page.get_by_role("button", name="Start a new session").click()
    tutor.wait(lambda: len(tutor.received("session.start")) == 2, what="a second session.start")
    assert len(tutor.sockets) == 2
    assert page.locator("#transcript .utterance").count() == 0


def test_a_start_refused_by_a_draining_server_starts_again_on_the_next_connection(page, page_server):
    """4012 (tutor/drain.py): the process refused the start because it is going away; the page
    reconnects (through the proxy, to another process) and sends the start there by itself."""
    tutor = open_tutor(page, page_server)
    page.get_by_role("button", name="Start").click()
    tutor.wait(lambda: tutor.received("session.start"), what="session.start")
    tutor.ws.close(code=4012, reason="draining")
    tutor.wait(lambda: len(tutor.sockets) == 2, what="a second connection")
    tutor.wait(lambda: len(tutor.received("session.start")) == 2, what="session.start on the new connection")
    tutor.send({"type": "state", "state": "connecting"}, {"type": "state", "state": "listening"})
    page.wait_for_selector("#tutor[data-state='listening']")
    assert "interrupted" not in (page.text_content("#notice") or "")
    assert page.get_attribute("#tutor", "data-phase") == "running"


def test_start_pressed_before_the_server_is_ready_starts_once(chromium, page_server):
    """The first `state` arrives while the microphone prompt is open: one session, on that connection."""
    context = chromium.new_context()
    page = context.new_page()
    try:
        page.add_init_script(
            """
            const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
            navigator.mediaDevices.getUserMedia = (constraints) =>
              new Promise((resolve) => setTimeout(resolve, 1000)).then(() => getUserMedia(constraints));
            """
        )
        tutor = open_tutor(page, page_server, on_connect=())
        page.get_by_role("button", name="Start").click()
        page.wait_for_selector("#tutor[data-phase='starting']")
        tutor.send(READY)
        tutor.wait(lambda: tutor.received("session.start"), what="session.start")
        page.wait_for_selector("#tutor[data-mic='on']")
        tutor.wait(lambda: tutor.frames, what="mic frames")
        assert len(tutor.sockets) == 1
        assert len(tutor.received("session.start")) == 1
        assert page.get_attribute("#tutor", "data-phase") == "running"
    finally:
        context.close()


@pytest.mark.parametrize(
    "code,message",
    [(4401, "Please log in"), (4403, "not a learner account"), (4409, "started a session in another window")],
)
def test_refusals_are_explained_and_not_retried(page, page_server, code, message):
    tutor = open_tutor(page, page_server)
    tutor.ws.close(code=code, reason="refused")
    page.wait_for_selector("#tutor[data-connection='closed']")
    assert message in page.text_content("#notice")
    page.wait_for_timeout(1500)  # longer than the first reconnect delay
    assert len(tutor.sockets) == 1
    assert page.is_disabled("#start-button")


def test_busy_is_shown_until_the_tutor_speaks_again(page, page_server):
    tutor = open_tutor(page, page_server)
    start(page, tutor)
    tutor.send({"type": "state", "state": "listening"})
    busy = "The tutor is busy; trying again in 2 s."
    tutor.send({"type": "busy", "attempt": 1, "retry_in_ms": 2000, "message": busy})
    page.wait_for_selector("#notice[data-kind='busy']:not([hidden])")
    assert page.text_content("#notice-text") == busy
    tutor.send({"type": "state", "state": "tutor_speaking"})
    page.wait_for_selector("#notice", state="hidden")


def test_the_error_that_ended_the_session_stays_readable(page, page_server):
    tutor = open_tutor(page, page_server)
    start(page, tutor)
    refused = "The tutor service is too busy right now. Please try again in a minute."
    tutor.send({"type": "error", "code": "upstream_busy", "message": refused}, {"type": "state", "state": "ended"})
    page.wait_for_selector("#tutor[data-state='ended']")
    assert page.text_content("#notice-text") == refused


def test_no_reconnect_after_the_session_ended(page, page_server):
    tutor = open_tutor(page, page_server)
    start(page, tutor)
    tutor.send({"type": "state", "state": "ended"})
    page.wait_for_selector("#tutor[data-state='ended']")
    tutor.ws.close(code=1000)
    page.wait_for_selector("#tutor[data-connection='closed']")
    page.wait_for_timeout(1500)
    assert len(tutor.sockets) == 1
    # A new session uses a fresh connection.
    page.get_by_role("button", name="Start a new session").click()
    tutor.wait(lambda: len(tutor.sockets) == 2 and tutor.received("session.start"), what="a fresh start")


@pytest.mark.parametrize(
    "error, notice, mic",
    [("NotAllowedError", "Microphone permission denied", "denied"), ("NotFoundError", "No microphone found", "not-found")],
)
def test_microphone_problems_are_explained_and_writing_still_works(chromium, page_server, error, notice, mic):
    context = chromium.new_context()
    page = context.new_page()
    try:
        # Fail getUserMedia the way a browser does when the learner refuses it, or has no microphone.
        page.add_init_script(
            f"navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('x', '{error}'));"
        )
        tutor = open_tutor(page, page_server)
        start(page, tutor)
        assert notice in page.text_content("#notice")
        assert page.get_attribute("#tutor", "data-mic") == mic
        assert page.is_enabled("#answer-text")
    finally:
        context.close()


def test_keyboard_only_start_and_labelled_controls(page, page_server, browser_output):
    tutor = open_tutor(page, page_server)
    page.focus("#start-button")
    page.keyboard.press("Enter")
    tutor.wait(lambda: tutor.received("session.start"), what="session.start")
    for name in ("Start", "Stop", "Send"):
        assert page.get_by_role("button", name=name).count() == 1
    assert page.get_by_role("meter").get_attribute("aria-labelledby") == "mic-label"
    assert page.get_by_role("log").count() == 1


def test_phone_width_has_no_horizontal_scroll(chromium, page_server, browser_output):
    context = chromium.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page = context.new_page()
    try:
        tutor = open_tutor(page, page_server)
        start(page, tutor)
        tutor.send({"type": "transcript", "role": "tutor", "item_id": "i1", "text": "¡Hola! ¿Cómo te llamas y de dónde eres?", "final": True})
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390
        page.screenshot(path=str(browser_output / "session-phone.png"), full_page=True)
    finally:
        context.close()


def test_worklets_resample_when_the_context_cannot_run_at_24khz(chromium, page_server):
    """Where the browser refuses a 24 kHz AudioContext, both worklets convert rates themselves."""
    context = chromium.new_context()
    page = context.new_page()
    try:
        page.add_init_script(
            """
            const Native = window.AudioContext;
            window.AudioContext = class extends Native {
              constructor(options = {}) { const { sampleRate, ...rest } = options; super({ ...rest, sampleRate: 48000 }); }
            };
            """
        )
        tutor = open_tutor(page, page_server)
        start(page, tutor)
        assert page.evaluate("window.parla.audio.sampleRate") == 48000
        tutor.wait(lambda: len(tutor.frames) >= 10, what="mic frames")
        assert set(tutor.frames) == {4800}
        tutor.wait(lambda: len(tutor.audio) >= 24000 * 2 * 4, what="4 s of audio")
        levels = frame_levels(tutor.audio)
        assert max(levels) > 0.05 and min(levels) < 0.01
        assert 150 <= dominant_hz(tutor.audio) <= 250  # resampled, not sped up or slowed down
        # 24 kHz in, 48 kHz out: the report is still in ms of what was heard.
        tutor.send({"type": "audio.start", "item_id": "item_r", "voice": "marin", "role": "tutor"})
        tutor.send(*chunks(tone(500)))
        tutor.send({"type": "audio.end", "item_id": "item_r"})
        done = tutor.wait(
            lambda: [r for r in tutor.received("playback.report") if r["item_id"] == "item_r" and r["played_ms"] >= 480],
            what="the final playback.report of item_r",
        )[0]
        assert 480 <= done["played_ms"] <= 500
    finally:
        context.close()


def test_a_dropped_connection_shows_reconnecting_and_resumes_the_same_session(page, page_server):
    """The socket drops mid-session (not a deliberate end): the page shows "reconnecting", reconnects,
    sends `session.resume` with the id of the `session` event, and shows the conversation where it was."""
    tutor = open_tutor(page, page_server)
    start(page, tutor)
    asked = {"type": "transcript", "role": "tutor", "item_id": "item_q", "text": "¿Cómo te llamas?", "final": True}
    ladder = {"A1": "sustained", "A2": "current", "B1": "untested", "B2": "untested", "C1": "untested", "C2": "untested"}
    tutor.send({"type": "session", "session_id": 42, "resumed": False}, asked, {"type": "level", "level": "A2", "ladder": ladder})
    page.wait_for_selector("#transcript .utterance-tutor")
    tutor.wait(lambda: tutor.frames, what="mic frames")
    tutor.ws.close(code=1011, reason="network gone")
    page.wait_for_selector("#tutor[data-phase='resuming']")
    assert page.get_attribute("#tutor", "data-state") == "reconnecting"
    assert "reconnecting" in page.text_content("#notice").lower()
    tutor.wait(lambda: tutor.received("session.resume"), what="session.resume on the new connection")
    assert tutor.received("session.resume") == [{"type": "session.resume", "session_id": 42}]
    assert len(tutor.received("session.start")) == 1 and len(tutor.sockets) == 2
    answered = {"type": "transcript", "role": "learner", "item_id": "answer_1", "text": "Me llamo Ana.", "final": True,
                "mode": "written"}
    tutor.send({"type": "state", "state": "connecting"}, {"type": "session", "session_id": 42, "resumed": True},
               asked, answered, {"type": "level", "level": "A2", "ladder": ladder},
               {"type": "state", "state": "tutor_speaking"}, {"type": "state", "state": "listening"})
    page.wait_for_selector("#tutor[data-state='listening']")
    assert page.get_attribute("#tutor", "data-phase") == "running"
    texts = page.locator("#transcript .utterance .utterance-text").all_text_contents()
    assert texts == ["¿Cómo te llamas?", "Me llamo Ana."]  # the conversation where it was, once
    assert page.locator("#notice").is_hidden()
    sent = len(tutor.frames)
    tutor.wait(lambda: len(tutor.frames) > sent, what="mic frames on the new connection")


def test_a_resume_the_server_refuses_offers_a_new_start(page, page_server):
    tutor = open_tutor(page, page_server)
    start(page, tutor)
    tutor.send({"type": "session", "session_id": 7, "resumed": False})
    tutor.ws.close(code=1011, reason="network gone")
    tutor.wait(lambda: tutor.received("session.resume"), what="session.resume")
    tutor.send({"type": "error", "code": "resume_expired", "message": "That session waited too long for you to come back."})
    page.wait_for_selector("#tutor[data-phase='interrupted']")
    assert "waited too long" in page.text_content("#notice")
    page.get_by_role("button", name="Start a new session").click()
    tutor.wait(lambda: len(tutor.sockets) == 3 and tutor.received("session.start")[1:], what="a new session.start")


def reload_mid_session(page, tutor, session_id: int) -> None:
    """A running session with a known id; then the tab reloads (the server detached the placement)."""
    start(page, tutor)
    tutor.send({"type": "session", "session_id": session_id, "resumed": False})
    page.wait_for_function("JSON.parse(sessionStorage.getItem('parla.sessionRunning')).sessionId === %d" % session_id)
    tutor.wait(lambda: tutor.frames, what="mic frames")
    page.reload()


def test_a_reload_mid_session_resumes_the_same_session(page, page_server):
    """The tab reloads mid-session: the new page sends `session.resume` with the id it had (not a new
    session.start), says it is reconnecting meanwhile, and on the resumed `session` runs on with the
    conversation and the microphone."""
    tutor = open_tutor(page, page_server)
    reload_mid_session(page, tutor, 42)
    tutor.wait(lambda: tutor.received("session.resume"), what="session.resume after the reload")
    assert tutor.received("session.resume") == [{"type": "session.resume", "session_id": 42}]
    assert len(tutor.received("session.start")) == 1
    assert page.get_attribute("#tutor", "data-phase") == "resuming"
    assert page.get_attribute("#tutor", "data-connection") == "reconnecting"  # until the server answers
    assert "Reconnecting to continue your session" in page.text_content("#notice-text")
    assert "ended" not in page.text_content("#notice-text")
    sent = len(tutor.frames)
    asked = {"type": "transcript", "role": "tutor", "item_id": "item_q", "text": "¿Cómo te llamas?", "final": True}
    tutor.send({"type": "state", "state": "connecting"}, {"type": "session", "session_id": 42, "resumed": True},
               asked, {"type": "state", "state": "listening"})
    page.wait_for_selector("#tutor[data-state='listening']")
    assert page.get_attribute("#tutor", "data-phase") == "running"
    assert page.get_attribute("#tutor", "data-connection") == "connected"
    assert page.locator("#transcript .utterance .utterance-text").all_text_contents() == ["¿Cómo te llamas?"]
    tutor.wait(lambda: len(tutor.frames) > sent, what="mic frames after the reload")
    assert page.get_attribute("#tutor", "data-mic") == "on"
    assert page.locator("#notice").is_hidden()  # the reconnecting notice is gone; the sound was not held
    assert page.get_by_role("button", name="Stop").is_enabled()
    # A second reload resumes the same session again.
    page.reload()
    tutor.wait(lambda: len(tutor.received("session.resume")) == 2, what="session.resume after the second reload")
    assert tutor.received("session.resume")[1]["session_id"] == 42


def test_a_reload_whose_session_the_server_cannot_continue_says_it_ended(page, page_server):
    tutor = open_tutor(page, page_server)
    reload_mid_session(page, tutor, 7)
    tutor.wait(lambda: tutor.received("session.resume"), what="session.resume after the reload")
    tutor.send({"type": "error", "code": "resume_unknown",
                "message": "Sessions cannot be continued on this server. Press Start to begin a new one."})
    page.wait_for_selector("#tutor[data-phase='interrupted']")
    assert page.get_attribute("#tutor", "data-connection") == "connected"
    assert "Your last session ended when this page was reloaded" in page.text_content("#notice-text")
    assert page.get_by_role("button", name="Open your history").is_visible()
    assert page.evaluate("sessionStorage.getItem('parla.sessionRunning')") is None  # a further reload: nothing to resume
    page.get_by_role("button", name="Start").click()
    tutor.wait(lambda: len(tutor.received("session.start")) == 2, what="a new session.start")


# Headless Chromium starts every AudioContext (and Playwright's own evaluations count as user gestures):
# this one behaves as a desktop browser's does on a page the learner has not clicked yet, held
# "suspended" until resume() once a real click happened (sticky activation, as the autoplay policy).
HELD_AUDIO = """
let clicked = false;
window.addEventListener("click", (event) => { if (event.isTrusted) clicked = true; }, true);
Object.defineProperty(UserActivation.prototype, "hasBeenActive", { get: () => clicked });
const Native = window.AudioContext;
window.AudioContext = class extends Native {
  constructor(options) { super(options); this.held = true; this.waiting = []; super.suspend(); }
  get state() { return this.held ? "suspended" : super.state; }
  resume() {
    if (this.held && !clicked) return new Promise((resolve) => this.waiting.push(resolve));
    this.held = false;
    return super.resume().then(() => this.waiting.splice(0).forEach((resolve) => resolve()));
  }
};
"""


def test_a_tab_restored_without_a_gesture_offers_turn_sound_on(chromium, page_server):
    """Browsers start an AudioContext only after a user gesture: a tab the phone discarded and restored
    has had none. The resumed session offers "Turn sound on", and the microphone follows that tap.
"""
    context = chromium.new_context()
    try:
        log_in(context.new_page(), page_server)  # the login (a click) in another tab: this one has no gesture
        page = context.new_page()
        page.add_init_script(HELD_AUDIO)
        page.add_init_script("sessionStorage.setItem('parla.sessionRunning', JSON.stringify({sessionId: 9}))")
        tutor = ScriptedTutor(page)
        page.goto(f"{page_server.url}/session/")
        tutor.wait(lambda: tutor.received("session.resume"), what="session.resume in the restored tab")
        assert tutor.received("session.resume") == [{"type": "session.resume", "session_id": 9}]
        tutor.send({"type": "session", "session_id": 9, "resumed": True}, {"type": "state", "state": "listening"})
        page.wait_for_selector("#tutor[data-state='listening']")
        sound = page.get_by_role("button", name="Turn sound on")
        sound.wait_for()
        assert "holding back the tutor's sound" in page.text_content("#notice-text")
        assert tutor.frames == []  # the microphone waits for the tap
        sound.click()
        tutor.wait(lambda: len(tutor.frames) > 3, what="mic frames after the tap")
        assert page.evaluate("window.parla.audio.ctx.state") == "running"
        assert page.get_attribute("#tutor", "data-mic") == "on"
        assert page.locator("#notice").is_hidden()
    finally:
        context.close()
