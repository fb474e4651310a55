"""Live servers for end-to-end tests: a Daphne process serving Parla, and the simulator in a thread.

Shared with the browser tests (tutor/tests/browser_support.py). The Daphne server is a real subprocess (`daphne config.asgi:application` on an ephemeral port) using
the test database, so what it stores is what the test reads. The simulator runs in the test process
(its own thread and event loop) so a test can set the simulated learner's true level and see which
upstream connections are still open.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

from tutor.realtime.simulator.background import BackgroundSimulator
from tutor.realtime.simulator.knobs import SimulatorKnobs

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    """The URL of the database the tests run on (pytest-django's test database)."""
    cfg = connection.settings_dict
    if cfg["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{cfg['NAME']}"
    user = cfg["USER"] or ""
    password = f":{cfg['PASSWORD']}" if cfg["PASSWORD"] else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{cfg['HOST'] or '127.0.0.1'}:{cfg['PORT'] or 5432}/{cfg['NAME']}"


class ThreadedSimulator(BackgroundSimulator):
    """The bundled simulator in a background thread, with the knobs a test turns between sessions."""

    def __init__(self, **knobs):
        super().__init__(knobs=SimulatorKnobs(**knobs))

    def set_knobs(self, **changes) -> None:
        """New defaults for the connections opened from now on (e.g. the learner's true level)."""

        async def apply():
            self.simulator.knobs = dataclasses.replace(self.simulator.knobs, **changes)

        self.call(apply())

    def open_connections(self) -> int:
        async def count():
            return len(self.simulator.connections)

        return self.call(count())

    def wait_all_closed(self, timeout: float) -> int:
        """Poll until no upstream connection is open (or `timeout`); returns how many still are."""
        deadline = time.monotonic() + timeout
        while self.open_connections() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.open_connections()


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@dataclasses.dataclass
class LiveServer:
    """A Parla server process serving the test database."""

    url: str  # http://127.0.0.1:PORT
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()


@contextmanager
def parla_server(*, realtime_url: str, redis_url: str | None = None, extra_env: dict | None = None, runserver=False):
    """Parla served on an ephemeral port by `daphne config.asgi:application`, or with `runserver=True`
    by `manage.py runserver` (Daphne's, without the autoreloader); yields a LiveServer."""
    port = free_port()
    media = tempfile.mkdtemp(prefix="parla-media-")
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "OPENAI_API_KEY", "DATABASE_URL"}}
    env.update(
        DATABASE_URL=database_url(),
        PARLA_REALTIME_URL=realtime_url,
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="1",
        PARLA_STEP_TIMEOUT="5",
        # A test server shares 2 cores with Chromium, the simulator and the test: it must not refuse a
        # session because the machine was busy (the refusal is tested in test_capacity).
        PARLA_SHED_STALLED_PERCENT="0",
        # A test server stopped at the end of a test (SIGTERM: the drain, tutor/drain.py) does not wait
        # for placements still running; the drain's own tests set this.
        PARLA_DRAIN_SECONDS="0",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",  # the test reads the log while the server runs
        # Learners' recordings of test sessions go to a scratch folder, never into the checkout.
        MEDIA_ROOT=media,  # removed with the server
    )
    env.update(extra_env or {})
    if redis_url:
        env["REDIS_URL"] = redis_url
        # Servers that should share the layer (several processes on one Redis) pass the same prefix.
        env["CHANNELS_PREFIX"] = (extra_env or {}).get("CHANNELS_PREFIX", f"parla-test-{port}")
    out_dir = ROOT / "test-output"  # CI keeps every server's log there
    scratch = None if out_dir.is_dir() else Path(tempfile.mkdtemp(prefix="parla-server-"))
    log_path = (scratch or out_dir) / f"daphne-{port}.log"
    if runserver:
        command = ["manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    else:
        command = ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
    failed = True
    try:
        with open(log_path, "w") as log:
            process = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                wait_for_port(port, 20, process)
                yield LiveServer(f"http://127.0.0.1:{port}", process, log_path)
                failed = False
            finally:
                stop_process(process)
    finally:
        shutil.rmtree(media, ignore_errors=True)  # whatever failed, recordings never pile up
        if scratch is not None and failed:
            print(f"server log kept: {log_path}", file=sys.stderr)
        elif scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def daphne_server(*, realtime_url: str, redis_url: str | None, extra_env: dict | None = None):
    """Parla served by Daphne on an ephemeral port; yields its base URL (http://127.0.0.1:PORT), which
    carries the process id as `.pid` (to measure the server)."""
    with parla_server(realtime_url=realtime_url, redis_url=redis_url, extra_env=extra_env) as server:
        url = ServerURL(server.url)
        url.pid = server.process.pid
        url.process = server.process
        url.log_path = server.log_path
        yield url


class ServerURL(str):
    """The base URL of a live server, carrying its process (and id) and the path of its log."""

    pid: int
    process: subprocess.Popen
    log_path: Path
