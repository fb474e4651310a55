"""Live servers for end-to-end tests: a Parla server process, and the simulator in a thread.

The one live-server helper of the tests (the browser tests' `browser_support.live_server` is built on
it). `parla_server` starts `daphne config.asgi:application`, Uvicorn (`python -m tutor.serve`) or
`manage.py runserver` on an ephemeral port, by default on the test database, so what it stores is
what the test reads. The simulator runs in the test process (its own thread and event loop) so a
test can set the simulated learner's true level and see which upstream connections are still open.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

from tutor.realtime.simulator.background import BackgroundSimulator
from tutor.realtime.simulator.knobs import SimulatorKnobs
from tutor.testing.waits import wait_until

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
        with contextlib.suppress(AssertionError):
            wait_until(lambda: not self.open_connections(), timeout, "every upstream connection closed")
        return self.open_connections()


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    def listening() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_until(listening, timeout, f"something listening on 127.0.0.1:{port}")


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def output_dir() -> Path:
    """Where live servers' logs and the browser tests' screenshots go: `PARLA_TEST_OUTPUT` when set (CI
    may keep it), otherwise this test run's temporary folder (conftest.py), never the checkout."""
    global _output
    if os.environ.get("PARLA_TEST_OUTPUT"):
        path = Path(os.environ["PARLA_TEST_OUTPUT"])
    else:
        path = _output = _output or Path(tempfile.mkdtemp(prefix="parla-test-output-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def use_output_dir(path: Path) -> None:
    """The folder `output_dir()` gives unless PARLA_TEST_OUTPUT is set (pytest's temporary folder)."""
    global _output
    _output = path


_output: Path | None = None


@dataclasses.dataclass
class LiveServer:
    """A Parla server process on an ephemeral port (the one live-server helper of the tests)."""

    url: str  # http://127.0.0.1:PORT
    process: subprocess.Popen
    log_path: Path
    env: dict[str, str]  # the server's environment: `manage` runs commands against its database
    username: str = ""  # a learner in the server's own database (browser servers), with their password
    password: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def manage(self, *args: str, timeout: float = 60) -> str:
        """Run a management command against the server's database; returns stdout."""
        return manage(self.env, *args, timeout=timeout)

    def query(self, code: str) -> str:
        """Run Python in `manage.py shell` against the server's database; returns stdout."""
        return self.manage("shell", "-v", "0", "-c", code).strip()


def manage(env: dict[str, str], *args: str, timeout: float = 60) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def server_env(*, realtime_url: str, database: str, redis_url: str | None = None, extra_env: dict | None = None) -> dict:
    """The environment of a test server: its database and upstream, DEBUG, nothing of the test process's
    own Django, pytest, Redis or OpenAI settings, and its recordings in a scratch folder (set by the caller)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "PYTEST_", "OPENAI_")) and k not in {"REDIS_URL", "DATABASE_URL"}
    }
    env.update(
        DATABASE_URL=database,
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
        # A dropped socket ends its placement at once, as the tests of leaving expect; the tests of
        # resuming a placement on a new connection (tutor/tests/test_resume*.py) set it.
        PARLA_RESUME_SECONDS="0",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",  # the test reads the log while the server runs
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra_env or {})
    return env


# How a live server is started (the arguments after `python`), by server: Daphne, or Uvicorn as
# `python -m tutor.serve` runs it.
SERVERS = {
    "daphne": lambda port: ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
    "uvicorn": lambda port: ["-m", "tutor.serve", "--host", "127.0.0.1", "--port", str(port)],
}
PRODUCTION = "daphne"  # the image's CMD (Dockerfile; config/tests/test_compose.py checks they agree)


def production_command(port: int) -> list[str]:
    return SERVERS[PRODUCTION](port)


@contextmanager
def parla_server(
    *, realtime_url: str, redis_url: str | None = None, extra_env: dict | None = None, runserver=False,
    database: str | None = None, username: str = "", password: str = "", server: str = "daphne",
):
    """Parla served on an ephemeral port by `server` (`SERVERS`: "daphne", "uvicorn", or "production",
    the image's), or with `runserver=True` by `manage.py runserver` (Daphne's, without the
    autoreloader); yields a LiveServer.

    `database`: a database URL (default: the test database, so what the server stores is what the test
    reads). The log goes to `output_dir()`, kept when the server failed to start or serve.
    """
    for attempt in range(3):
        port = free_port()
        with _parla_server_on(port, realtime_url=realtime_url, redis_url=redis_url, extra_env=extra_env,
                              runserver=runserver, database=database, username=username, password=password,
                              server=server) as live:
            if live is None:  # another program took the port between free_port() and the bind: again
                continue
            yield live
            return
    raise RuntimeError("no free port held for the server after 3 tries")


def answers_as_parla(port: int, proc: subprocess.Popen, timeout: float) -> bool:
    """Whether Parla, the process started, answers on `port`: its `/healthz` says "ok". Another program
    (a simulator of another test worker) may have taken the port between free_port() and the server's
    bind, and then the server exits; what listens there is not it."""
    def answered():
        if proc.poll() is not None:
            return "exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                return "ok" if response.status == 200 and response.read().strip() == b"ok" else "other"
        except urllib.error.HTTPError:
            return "other"
        except OSError:
            return None  # starting
    return wait_until(answered, timeout, f"Parla answering /healthz on {port}") == "ok"


@contextmanager
def _parla_server_on(
    port: int, *, realtime_url, redis_url, extra_env, runserver, database, username, password, server,
):
    media = tempfile.mkdtemp(prefix="parla-media-")
    env = server_env(
        realtime_url=realtime_url, database=database or database_url(), redis_url=redis_url,
        # Learners' recordings of test sessions go to a scratch folder, never into the checkout.
        extra_env={"MEDIA_ROOT": media, **(extra_env or {})},
    )
    if redis_url:
        # Servers that should share the layer (several processes on one Redis) pass the same prefix.
        env.setdefault("CHANNELS_PREFIX", f"parla-test-{port}")
    log_path = output_dir() / f"server-{port}.log"
    if runserver:
        command = ["manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    else:
        command = SERVERS[PRODUCTION if server == "production" else server](port)
    try:
        with open(log_path, "w") as log:
            process = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                wait_for_port(port, 60, process)
                if not answers_as_parla(port, process, 60):
                    yield None
                    return
                yield LiveServer(f"http://127.0.0.1:{port}", process, log_path, env, username, password)
            except BaseException:
                print(f"server log: {log_path}", file=sys.stderr)
                raise
            finally:
                stop_process(process)
    finally:
        shutil.rmtree(media, ignore_errors=True)  # whatever failed, recordings never pile up


@contextmanager
def daphne_server(*, realtime_url: str, redis_url: str | None, extra_env: dict | None = None, server: str = "daphne"):
    """Parla served by Daphne (or `server`: see parla_server) on an ephemeral port; yields its
    base URL (http://127.0.0.1:PORT), which carries the process id as `.pid` and the path of its log
    as `.log_path` (to measure the server)."""
    with parla_server(realtime_url=realtime_url, redis_url=redis_url, extra_env=extra_env, server=server) as server:
        url = ServerURL(server.url)
        url.pid = server.pid
        url.process = server.process
        url.log_path = server.log_path
        yield url


def production_server(*, realtime_url: str, redis_url: str | None, extra_env: dict | None = None):
    """Parla served as the image serves it (`PRODUCTION`); yields its base URL as `daphne_server` does."""
    return daphne_server(realtime_url=realtime_url, redis_url=redis_url, extra_env=extra_env, server="production")


def wait_idle(log_path: Path, timeout: float = 20) -> None:
    """Wait until a live server has finished with its learners: every websocket it accepted is closed
    (Daphne's access log) and every tutor session it started has closed (the session's last log line),
    so its database writes are done. A test sharing a server waits for this before the test database
    is emptied under it (the server's writes and the emptying would deadlock)."""

    def idle() -> bool:
        log = log_path.read_text(errors="replace")
        return (log.count('"WSCONNECT ') == log.count('"WSDISCONNECT ')
                and log.count("tutor session started") <= log.count("tutor session closed"))

    wait_until(idle, timeout, f"the server to finish with its learners (log: {log_path})")


class ServerURL(str):
    """The base URL of a live server, carrying its process (and id) and the path of its log."""

    pid: int
    process: subprocess.Popen
    log_path: Path
