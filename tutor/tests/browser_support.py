"""Helpers for the browser tests: a live Parla server in a subprocess, a fake-microphone WAV, and
Debian's Chromium driven by Playwright.

The server runs as `manage.py runserver` (Daphne: HTTP + websockets) on an ephemeral port with its
own SQLite file, so it shares nothing with the pytest process or its test database (tutor/tests/live.py
starts it). Chromium is the system package (`/usr/bin/chromium`, installed by `scripts/test` under CI);
Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import wave
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from tutor.realtime.audio import SAMPLE_RATE
from tutor.testing.waits import wait_until
from tutor.tests.live import ThreadedSimulator, manage, output_dir, parla_server, server_env

CHROMIUM = os.environ.get("PARLA_CHROMIUM", "/usr/bin/chromium")

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def fake_media_args(wav: Path | None) -> list[str]:
    """Chromium flags for a fake microphone (auto-granted) that plays `wav` in a loop."""
    args = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
    if wav is not None:
        args.append(f"--use-file-for-fake-audio-capture={wav}")
    return args


# -- the fake microphone ----------------------------------------------------------------------------


def speech_like(seconds: float, rate: int, f0: float = 200.0, amplitude: float = 0.35) -> np.ndarray:
    """A voiced, vowel-like burst: harmonics of `f0` with a little vibrato and soft edges."""
    t = np.arange(int(seconds * rate)) / rate
    pitch = f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    harmonics = [1.0, 0.6, 0.45, 0.3, 0.2, 0.12]
    wave_ = sum(a * np.sin((k + 1) * phase) for k, a in enumerate(harmonics))
    syllables = 0.6 + 0.4 * np.abs(np.sin(2 * np.pi * 2.5 * t))  # ~5 syllables a second
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.03)
    signal = wave_ * syllables * fade
    return amplitude * signal / np.max(np.abs(signal))


def make_speech_wav(
    path: Path, *, rate: int = 48000, talk_s: float = 1.5, pause_s: float = 1.5, turns: int = 6
) -> Path:
    """Write a mono 16-bit WAV of `turns` speech-like bursts, each followed by silence.

    The simulator's energy VAD (-35 dBFS at the default threshold) hears each burst as a turn: it
    starts a little above -15 dBFS and the silence is digital zero. Chromium loops the file.
    """
    silence = np.zeros(int(pause_s * rate))
    parts = []
    for i in range(turns):
        parts += [speech_like(talk_s, rate, f0=180.0 + 15 * (i % 3)), silence]
    pcm = (np.concatenate(parts) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def make_answers_wav(path: Path, level: str, *, pause_s: float = 3.0, turns: int = 6) -> Path:
    """A mono 16-bit 24 kHz WAV of `turns` spoken answers of `level`'s fluency (the offline rater
    measures it from the audio: tutor.testing.learners.spoken_answer), each followed by `pause_s` of
    silence. Chromium loops the file."""
    from tutor.testing.learners import spoken_answer

    silence = b"\0\0" * int(pause_s * SAMPLE_RATE)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(b"".join(spoken_answer(level) + silence for _ in range(turns)))
    return path


# -- the live server --------------------------------------------------------------------------------

LEARNER = ("ana", "fake-mic-learner-pw-1")  # the learner in every browser server's database


@functools.cache
def _template_database() -> Path:
    """A migrated SQLite database holding the learner, made once per test run; each browser server
    starts from a copy of it (migrating takes seconds)."""
    db = Path(tempfile.mkdtemp(prefix="parla-browser-db-")) / "db.sqlite3"
    env = server_env(realtime_url="", database=f"sqlite:///{db}")
    manage(env, "migrate", "--noinput", "-v", "0", timeout=120)
    username, password = LEARNER
    manage(
        env, "shell", "-v", "0", "-c",
        "from django.contrib.auth import get_user_model; from assessments.models import Learner; "
        f"u = get_user_model().objects.create_user({username!r}, password={password!r}); "
        "Learner.objects.create(user=u, target_language='es')",
    )  # fmt: skip
    return db


@contextmanager
def live_server(
    workdir: Path, *, true_level: str | None = "B1", pace: float | None = None, extra_env=None,
    probe_shape: str | None = None,
):
    """A Parla server (`manage.py runserver`) and, with `true_level`, the simulator (in a thread of the
    test process) as its upstream; yields a LiveServer.

    `pace`: the simulator's audio generation rate (None: its default, faster than real time).

    The server has a SQLite database of its own in `workdir`, shared with nothing, holding one learner
    (`LiveServer.username/password`); its log is in `output_dir()` (`LiveServer.log()`).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "db.sqlite3"
    shutil.copyfile(_template_database(), db)
    username, password = LEARNER
    with contextlib.ExitStack() as stack:
        realtime_url = ""
        if true_level is not None:
            knobs = {"true_level": true_level, **({"pace": pace} if pace is not None else {})}
            knobs.update({"probe_shape": probe_shape} if probe_shape else {})
            realtime_url = stack.enter_context(ThreadedSimulator(**knobs)).url
        yield stack.enter_context(parla_server(
            realtime_url=realtime_url, extra_env=extra_env, runserver=True, database=f"sqlite:///{db}", username=username, password=password,
        ))  # fmt: skip


# -- the browser ------------------------------------------------------------------------------------


def chromium_available() -> bool:
    return Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is not None


def launch_chromium(playwright, *, wav: Path | None = None, extra_args=()):
    """Debian's Chromium, headless, with a fake microphone playing `wav` (never Playwright's build)."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[*CHROMIUM_ARGS, *fake_media_args(wav), *extra_args],
    )


def wait_for_js(page, expression: str, timeout: float = 30_000) -> None:
    """Wait until the JavaScript `expression` is truthy on the page (poll, `timeout` in ms).

    Playwright's `wait_for_function` evaluates its predicate with the page's `eval`, which Parla's
    Content-Security-Policy forbids (no 'unsafe-eval'); `page.evaluate` goes through the DevTools
    protocol, which the policy does not govern.
    """
    wait_until(lambda: page.evaluate(expression), timeout / 1000, expression, pause=page_pause(page))


def page_pause(page):
    """A pause for `wait_until` that lets Playwright deliver the page's events meanwhile."""
    return lambda seconds: page.wait_for_timeout(seconds * 1000)


def log_in(page, server: LiveServer, next_path: str = "/session/", *, username=None, password=None) -> None:
    """Log in through the real login page (as the server's learner unless told); lands on `next_path`."""
    page.goto(f"{server.url}/accounts/login/?next={next_path}")
    page.get_by_label("Username").fill(username or server.username)
    page.get_by_label("Password").fill(password or server.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{server.url}{next_path}")


# -- pytest fixtures (import them into a test module to use them) -----------------------------------


def _unavailable(reason: str):
    """Skip locally; under CI a browser test that cannot run is a failure, not a skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser_output() -> Path:
    """Screenshots and logs of the browser tests: `browser/` in the test output folder (live.output_dir)."""
    path = output_dir() / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def fake_mic_wav(tmp_path_factory) -> Path:
    return make_speech_wav(tmp_path_factory.mktemp("mic") / "speech.wav")


@pytest.fixture(scope="module")
def chromium(fake_mic_wav):
    """A headless Debian Chromium whose microphone plays `fake_mic_wav` (permission auto-granted).

    Module-scoped: Playwright's sync API keeps an event loop of its own, which must be gone before
    the async tests of other modules run.
    """
    if not chromium_available():
        _unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, wav=fake_mic_wav)
        try:
            yield browser
        finally:
            browser.close()
