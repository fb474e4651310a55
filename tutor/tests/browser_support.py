"""Helpers for the browser tests: a live Parla server in a subprocess, a fake-microphone WAV, and
Debian's Chromium driven by Playwright.

The server runs as `manage.py runserver` (Daphne: HTTP + websockets) on an ephemeral port with its
own SQLite file, so it shares nothing with the pytest process or its test database. Chromium is the
system package (`/usr/bin/chromium`, installed by `scripts/test` under CI); Playwright's own browser
downloads are never used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import wave
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tutor.realtime.audio import SAMPLE_RATE
import pytest

from tutor.tests.live import free_port, stop_process, wait_for_port

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("PARLA_CHROMIUM", "/usr/bin/chromium")
OUTPUT_DIR = REPO / "test-output" / "browser"

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


@dataclass
class LiveServer:
    url: str  # http://127.0.0.1:PORT
    port: int
    env: dict[str, str]
    log_path: Path
    username: str
    password: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    def manage(self, *args: str, timeout: float = 60) -> str:
        """Run a management command against the live server's database; returns stdout."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def query(self, code: str) -> str:
        """Run Python in `manage.py shell` against the live server's database; returns stdout."""
        return self.manage("shell", "-v", "0", "-c", code).strip()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def simulator_command_exists() -> bool:
    return (REPO / "tutor" / "management" / "commands" / "realtime_simulator.py").exists()


@contextmanager
def live_server(
    workdir: Path, *, true_level: str | None = "B1", pace: float | None = None, extra_env=None,
    probe_shape: str | None = None,
):
    """A Parla server (and, with `true_level`, a realtime simulator as its upstream) in subprocesses.

    `pace`: the simulator's audio generation rate (None: its default, faster than real time).

    The server gets a fresh SQLite database with one learner (`LiveServer.username/password`).
    Its output and the simulator's go to `workdir/server.log`, shown when a test fails.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "db.sqlite3"
    db.unlink(missing_ok=True)
    log_path = workdir / "server.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "PYTEST_", "OPENAI_")) and k not in ("REDIS_URL", "DATABASE_URL")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=f"sqlite:///{db}",
        DEBUG="1",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="INFO",
        PARLA_REALTIME_URL="",
        PARLA_SHED_STALLED_PERCENT="0",  # no refusal because the test machine was busy (test_capacity)
    )
    env.update(extra_env or {})
    server = LiveServer(
        url="", port=0, env=env, log_path=log_path, username="ana", password="fake-mic-learner-pw-1"
    )
    log = open(log_path, "w")
    try:
        server.manage("migrate", "--noinput", "-v", "0", timeout=120)
        server.query(
            "from django.contrib.auth import get_user_model; from assessments.models import Learner; "
            f"u = get_user_model().objects.create_user({server.username!r}, password={server.password!r}); "
            "Learner.objects.create(user=u, target_language='es')"
        )
        if true_level is not None:
            if not simulator_command_exists():
                raise RuntimeError("tutor/management/commands/realtime_simulator.py does not exist yet")
            sim_port = free_port()
            sim = subprocess.Popen(
                [
                    sys.executable, "manage.py", "realtime_simulator",
                    "--host", "127.0.0.1", "--port", str(sim_port),
                    "--true-level", true_level, *(["--pace", str(pace)] if pace is not None else []),
                    *(["--probe-shape", probe_shape] if probe_shape else []),
                ],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            server.processes.append(sim)
            wait_for_port(sim_port, 30, sim)
            env["PARLA_REALTIME_URL"] = f"ws://127.0.0.1:{sim_port}/v1/realtime"
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        server.processes.append(proc)
        wait_for_port(port, 60, proc)
        server.port = port
        server.url = f"http://127.0.0.1:{port}"
        yield server
    finally:
        for proc in reversed(server.processes):
            stop_process(proc)
        log.close()


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
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} ms waiting for {expression}")
        page.wait_for_timeout(50)  # lets Playwright deliver the page's events meanwhile


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
    """test-output/browser/: screenshots and logs of the browser tests."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    return OUTPUT_DIR


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
