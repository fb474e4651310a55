"""The Redis channel layer in the production shape: real Daphne processes on a real Redis.

- Sockets held idle for 20 s stay open (redis-py 8's 5 s default socket timeout equals channels-redis's
  5 s blocking receive and used to close every socket with 1011: django/channels_redis#422).
- A Redis restart under two server processes: live sockets stay open, the teachers' live view
  resumes, and new connections on each process work (no stale pooled connection).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from contextlib import contextmanager
from datetime import datetime, timezone

import pytest
import websockets

from config.tests.test_services import require_service
from tutor.tests.live import ThreadedSimulator, daphne_server, free_port, stop_process, wait_for_port
from tutor.tests.test_end_to_end import login_cookie, next_json, tutor_socket

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

IDLE_SECONDS = 20


@pytest.fixture(scope="module")
def simulator():
    with ThreadedSimulator(pace=0.0, seed=13) as sim:
        yield sim


def teacher_socket(base_url: str, cookie: str):
    url = base_url.replace("http", "ws") + "/ws/teacher/live/"
    return websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": base_url})


async def joined_live_view(ws) -> None:
    """Wait until the teacher's consumer has joined the live group: it answers messages only after
    its `connect` (which joins the group) finished."""
    await ws.send("{}")
    while (event := await next_json(ws, timeout=10))["type"] != "error":
        continue  # snapshots of sessions already running may come first
    assert event["code"] == "read_only"


async def ready(ws) -> None:
    """Wait until the learner's consumer has joined its group and says it is ready."""
    assert (await next_json(ws, timeout=10)) == {"type": "state", "state": "ready", "demo": True, "language": "es", "running_elsewhere": False}


async def snapshot_of(ws, learner: str, *, since: datetime | None = None, timeout: float = 20) -> dict:
    """The next live-view snapshot about `learner` taken after `since` (others are skipped)."""

    async def wait():
        while True:
            event = await next_json(ws, timeout=timeout)
            if event["type"] != "session" or event["session"]["learner"] != learner:
                continue
            if since is None or datetime.fromisoformat(event["session"]["at"]) > since:
                return event["session"]

    return await asyncio.wait_for(wait(), timeout)


async def stays_open(ws, seconds: float) -> bool:
    try:
        await asyncio.wait_for(ws.wait_closed(), seconds)
    except TimeoutError:
        return True
    return False


@pytest.fixture
def cookies(make_user):
    """Session cookies of two learners (ana, bea) and a teacher (tomas), made outside the event loop."""
    users = [make_user("ana", learner=True), make_user("bea", learner=True), make_user("tomas", teacher=True)]
    return {user.username: login_cookie(user) for user in users}


async def test_idle_learner_and_teacher_sockets_stay_open_over_redis(simulator, cookies):
    require_service("REDIS_URL", "redis")
    learner_cookie, teacher_cookie = cookies["ana"], cookies["tomas"]
    with daphne_server(realtime_url=simulator.url, redis_url=os.environ["REDIS_URL"]) as base:
        async with tutor_socket(base, learner_cookie) as learner_ws, teacher_socket(base, teacher_cookie) as teacher_ws:
            await ready(learner_ws)
            await joined_live_view(teacher_ws)

            # Both idle for longer than redis-py's default socket timeout (several times over).
            still_open = await asyncio.gather(stays_open(learner_ws, IDLE_SECONDS), stays_open(teacher_ws, IDLE_SECONDS))
            assert still_open == [True, True], (learner_ws.close_code, teacher_ws.close_code)

            # And the layer still carries messages: the learner starts, the teacher sees it.
            await learner_ws.send(json.dumps({"type": "session.start"}))
            assert (await snapshot_of(teacher_ws, "ana"))["state"]


# --- a Redis restart under two server processes ------------------------------------------------


@contextmanager
def own_redis():
    """A redis-server of this test's own (no persistence, like a restart that loses its data)."""
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]

    def start():
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(port, 10, process)
        return process

    def restart():
        nonlocal process
        process.kill()  # a crash, not a clean shutdown
        process.wait(timeout=10)
        process = start()

    process = start()
    try:
        yield f"redis://127.0.0.1:{port}/0", restart
    finally:
        stop_process(process)


def redis_cli(url: str, *args: str) -> str:
    port = url.rsplit(":", 1)[1].split("/")[0]
    return subprocess.run(["redis-cli", "-p", port, *args], capture_output=True, text=True, timeout=10).stdout.strip()


async def test_redis_restart_keeps_live_sessions_and_the_live_view_going(simulator, cookies):
    prefix = "parla-restart"
    with own_redis() as (redis_url, restart_redis):
        extra = {"CHANNELS_PREFIX": prefix}
        with daphne_server(realtime_url=simulator.url, redis_url=redis_url, extra_env=extra) as a, daphne_server(
            realtime_url=simulator.url, redis_url=redis_url, extra_env=extra
        ) as b:
            async with teacher_socket(a, cookies["tomas"]) as teacher_a, tutor_socket(b, cookies["ana"]) as ana_b:
                await joined_live_view(teacher_a)
                await ready(ana_b)
                await ana_b.send(json.dumps({"type": "session.start"}))
                await snapshot_of(teacher_a, "ana")  # across processes, before the restart

                await asyncio.to_thread(restart_redis)
                restarted = datetime.now(timezone.utc)

                # The restarted Redis lost every group; process A writes its teacher back in.
                deadline = asyncio.get_running_loop().time() + 15
                group = f"{prefix}:group:teachers-live"
                while redis_cli(redis_url, "EXISTS", group) != "1":
                    assert asyncio.get_running_loop().time() < deadline, "the teachers' group was not restored"
                    await asyncio.sleep(0.1)  # polling Redis from outside, not waiting in protocol code

                # New connections on each process, first thing after the restart.
                async with teacher_socket(b, cookies["tomas"]) as teacher_b, tutor_socket(a, cookies["bea"]) as bea_a:
                    await joined_live_view(teacher_b)
                    await ready(bea_a)
                    await bea_a.send(json.dumps({"type": "session.start"}))
                    # Both teachers (one per process) see the new session on A...
                    assert (await snapshot_of(teacher_a, "bea"))["learner"] == "bea"
                    assert (await snapshot_of(teacher_b, "bea"))["learner"] == "bea"

                    # ...and the session that was running on B through the restart goes on.
                    await ana_b.send(json.dumps({"type": "answer.text", "text": "Me llamo Ana y vivo en Madrid."}))
                    assert await snapshot_of(teacher_a, "ana", since=restarted)
                    assert await snapshot_of(teacher_b, "ana", since=restarted)

                for ws in (teacher_a, ana_b):
                    assert ws.close_code is None, f"closed with {ws.close_code} across the restart"
