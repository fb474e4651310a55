"""An upstream that stops answering mid-conversation (issue 27, item 3).

The simulator runs as its own process and is stopped with SIGSTOP: its sockets stay open and silent, as
with a hung upstream. Through a live Daphne: the silence is noticed by websocket keepalive within a
bounded time; the session resumes on a new upstream session when the upstream answers again, and
otherwise ends with a message saying what happened, its upstream socket closed.
"""

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tutor.realtime.failures import SILENT

from .live import ROOT, daphne_server, free_port, stop_process, wait_for_port
from .test_faults_numbers import login, open_tutor, read_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]

KEEPALIVE = 1.0  # seconds: silence noticed within 2 s (a stalling loop stretches it)
ENV = {"PARLA_UPSTREAM_KEEPALIVE_SECONDS": str(KEEPALIVE)}


@contextlib.contextmanager
def simulator_process():
    """`manage.py realtime_simulator` (pace 0) on an ephemeral port, as its own process; yields it."""
    port = free_port()
    command = [sys.executable, "manage.py", "realtime_simulator", "--port", str(port), "--pace", "0", "--seed", "7"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, 30, process)
        process.port = port
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
        stop_process(process)


def established_to(pid: int, port: int) -> int:
    """How many TCP connections process `pid` holds open to 127.0.0.1:`port` (its fds' socket inodes,
    looked up in /proc/net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        if inode in inodes and state == "01" and int(remote.split(":")[1], 16) == port:
            count += 1
    return count


async def wait_for_log(url, text: str, timeout: float) -> float:
    """Seconds until `text` appears in the server's log."""
    started = time.monotonic()
    while text not in url.log_path.read_text():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{text!r} not logged within {timeout} s")
        await asyncio.sleep(0.05)  # polling a file another process writes
    return time.monotonic() - started


async def mid_conversation(url, cookie):
    """A session whose tutor has greeted and been answered once: the conversation is under way."""
    ws = await open_tutor(url, cookie)
    await ws.send(json.dumps({"type": "session.start"}))
    await read_until(ws, lambda e: e["type"] == "audio.end")
    await ws.send(json.dumps({"type": "answer.text", "text": "Me llamo Ana y vivo en Madrid."}))
    await read_until(ws, lambda e: e["type"] == "transcript" and e["role"] == "tutor" and e["final"])
    return ws


def test_a_silent_upstream_ends_the_session_with_a_message_and_its_socket_closed(make_user):
    cookie = login(make_user, "silenced")

    async def run(url, simulator):
        ws = await mid_conversation(url, cookie)
        assert established_to(url.pid, simulator.port) == 1
        os.kill(simulator.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        await ws.send(json.dumps({"type": "answer.text", "text": "Me gusta leer."}))
        noticed = await wait_for_log(url, "upstream session ended", 2 * KEEPALIVE + 5)
        told = await read_until(ws, lambda e: e["type"] == "error" and e["code"] == SILENT.code, timeout=30)
        ended = await read_until(ws, lambda e: e["type"] == "state" and e["state"] == "ended", timeout=30)
        took = time.monotonic() - stopped
        held = established_to(url.pid, simulator.port)
        await ws.close()
        return noticed, told, ended, took, held

    with simulator_process() as simulator:
        with daphne_server(realtime_url=f"ws://127.0.0.1:{simulator.port}/v1/realtime", redis_url=None, extra_env=ENV) as url:
            noticed, told, ended, took, held = asyncio.run(run(url, simulator))
    print(f"silence noticed after {noticed:.1f} s, session ended after {took:.1f} s")
    assert noticed <= 2 * KEEPALIVE + 2
    assert told["message"] == SILENT.message
    assert ended["state"] == "ended" and took < 30
    assert held == 0, "the session's upstream socket is still open"


def test_a_session_resumes_on_a_new_upstream_session_once_the_upstream_answers_again(make_user):
    cookie = login(make_user, "resumed")

    async def run(url, simulator):
        ws = await mid_conversation(url, cookie)
        os.kill(simulator.pid, signal.SIGSTOP)
        await wait_for_log(url, "upstream session ended", 2 * KEEPALIVE + 5)
        os.kill(simulator.pid, signal.SIGCONT)  # back while the session reconnects
        await wait_for_log(url, "upstream session resumed", 15)
        await ws.send(json.dumps({"type": "answer.text", "text": "Me gusta leer y nadar."}))
        said = await read_until(ws, lambda e: e["type"] in ("error", "transcript") and e.get("role") != "learner", 15)
        await ws.close()
        return said

    with simulator_process() as simulator:
        with daphne_server(realtime_url=f"ws://127.0.0.1:{simulator.port}/v1/realtime", redis_url=None, extra_env=ENV) as url:
            said = asyncio.run(run(url, simulator))
            log = url.log_path.read_text()
    assert said["type"] == "transcript" and said["role"] == "tutor", said  # the tutor answers on the new session
    assert SILENT.code not in log
