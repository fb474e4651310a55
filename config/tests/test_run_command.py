"""The README's run command, end to end: `scripts/run` on a fresh database serves the home and login
pages, and its Daphne accepts a demo learner's websocket and refuses anonymous and foreign-Origin ones.

The server runs with its own SQLite file and no service variables, as on a fresh machine. Runtime:
a few seconds (migrate, two password hashes, server start)."""

import asyncio
import hashlib
import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from config.tests.helpers import REPO, clean_env
from tutor.realtime.wire import CLOSE_NOT_AUTHENTICATED
from tutor.testing.waits import wait_until
from tutor.tests.live import free_port

STARTUP_TIMEOUT = 15.0
CREDENTIALS = re.compile(r"demo learner: username=(\S+) password=(\S+)")


def venv_is_current() -> bool:
    """scripts/run would (re)install into .venv otherwise, which does not belong in a test."""
    stamp = REPO / ".venv" / ".parla-requirements.sha256"
    want = hashlib.sha256((REPO / "requirements.txt").read_bytes()).hexdigest()
    return Path(sys.prefix).resolve() == (REPO / ".venv").resolve() and stamp.is_file() and (
        stamp.read_text().strip() == want
    )


@pytest.fixture
def server(tmp_path):
    """(base URL, learner password) of `scripts/run 127.0.0.1:PORT --noreload` on a fresh SQLite file."""
    if not venv_is_current():
        pytest.skip(".venv's requirements stamp is stale: run scripts/test (or scripts/run) once first")
    port = free_port()
    log_path = tmp_path / "run.log"
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(REPO / "scripts" / "run"), f"127.0.0.1:{port}", "--noreload"],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, ended by its id below
        )
    try:
        def serving():
            if process.poll() is not None:
                pytest.fail(f"scripts/run exited:\n{log_path.read_text(errors='replace')}")
            credentials = CREDENTIALS.search(log_path.read_text(errors="replace"))
            return credentials if credentials and _accepts(port) else None

        try:
            credentials = wait_until(serving, STARTUP_TIMEOUT, "scripts/run to serve")
        except AssertionError:
            pytest.fail(f"scripts/run did not serve within {STARTUP_TIMEOUT}s:\n{log_path.read_text(errors='replace')}")
        yield f"127.0.0.1:{port}", credentials.group(2), log_path
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _browser():
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(jar))
    return opener, jar


def test_scripts_run_serves_pages_and_the_tutor_socket(server):
    host, password, log_path = server
    opener, jar = _browser()

    home = opener.open(f"http://{host}/", timeout=5)
    assert home.status == 200 and "Parla is a voice tutor" in home.read().decode()
    assert opener.open(f"http://{host}/static/css/parla.css", timeout=5).status == 200

    login = opener.open(f"http://{host}/accounts/login/", timeout=5)
    assert login.status == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.read().decode()).group(1)
    form = urllib.parse.urlencode(
        {"username": "learner", "password": password, "csrfmiddlewaretoken": token, "next": "/session/"}
    ).encode()
    landed = opener.open(f"http://{host}/accounts/login/", data=form, timeout=5)
    assert landed.status == 200 and urllib.parse.urlparse(landed.url).path == "/session/"
    sessionid = next(cookie.value for cookie in jar if cookie.name == "sessionid")

    asyncio.run(_check_websockets(host, sessionid))
    assert "Traceback" not in log_path.read_text(errors="replace")


async def _check_websockets(host: str, sessionid: str):
    url = f"ws://{host}/ws/tutor/"
    origin = f"http://{host}"

    # The logged-in demo learner is accepted and stays connected.
    async with connect(url, origin=origin, additional_headers={"Cookie": f"sessionid={sessionid}"},
                       proxy=None, open_timeout=5) as ws:
        try:
            message = await asyncio.wait_for(ws.recv(), timeout=0.5)
            assert message  # whatever the tutor sends first, the socket is open
        except TimeoutError:
            pass

    # Anonymous: the handshake completes, then the browser reads close code 4401.
    async with connect(url, origin=origin, proxy=None, open_timeout=5) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), timeout=5)
        assert closed.value.rcvd.code == CLOSE_NOT_AUTHENTICATED

    # A foreign Origin is refused at the handshake, logged in or not.
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, origin="http://evil.example", proxy=None, open_timeout=5,
                           additional_headers={"Cookie": f"sessionid={sessionid}"}):
            pass
    assert refused.value.response.status_code == 403
