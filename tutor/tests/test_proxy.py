"""The production shape on this machine: nginx (the Debian package, with deploy/nginx/parla.conf) in
front of two Parla processes served as the image serves them (Daphne) on Redis and PostgreSQL, learners driven through the proxy.

Sessions land on both processes; a teacher watching on one process sees the sessions of the other;
SIGTERM to one process while sessions run: its readiness turns 503 within a second, each of its
placements is delivered within the drain, a learner starting meanwhile is moved to the other process
(close 4012, the page's retry), and the other process's learners see no error.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import pytest
import websockets

from django.db import connections
from django.db.models import Count

from assessments.models import Assessment, TutorSession
from tutor.realtime.wire import CLOSE_SERVICE_RESTART
from tutor.tests.live import ThreadedSimulator, free_port, production_server
from tutor.tests.ops_support import http_get, sample, scrape
from tutor.tests.proxy import nginx_proxy
from tutor.tests.test_end_to_end import login_cookie, next_json, run_learner, tutor_socket

pytestmark = pytest.mark.django_db(transaction=True)

LEARNERS = int(os.environ.get("PARLA_PROXY_TEST_LEARNERS", "4"))  # the README's deploy figures: 20 (run with -s)


@pytest.fixture(scope="module")
def simulator():
    with ThreadedSimulator(pace=0.0, seed=3, audio_ms_per_response=300) as sim:
        yield sim


def rated_answers() -> list[int]:
    """How many answers of each proxied learner's session are rated so far (run in a worker thread,
    whose database connection is closed after, so the test database can be dropped at the end)."""
    try:
        return list(
            TutorSession.objects.filter(learner__user__username__startswith="proxied-")
            .annotate(rated=Count("probes")).values_list("rated", flat=True)
        )
    finally:
        connections.close_all()


def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("REDIS_URL is not set (scripts/test sets it when Redis runs; CI always does)")
    return url


async def watch(base_url: str, cookie: str, seen: list[dict]) -> None:
    url = base_url.replace("http", "ws") + "/ws/teacher/live/"
    async with websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": base_url}) as teacher:
        async for raw in teacher:
            seen.append(json.loads(raw)["session"])


async def idle_socket_on(proxy: str, cookie: str, metrics_port: int, tries: int = 10):
    """A learner's socket through the proxy that landed on the process of `metrics_port` (its
    `parla_learner_sockets` went up), ready and in no session; the others tried are closed."""
    for _ in range(tries):
        before = sample(await asyncio.to_thread(scrape, metrics_port), "parla_learner_sockets")
        ws = await tutor_socket(proxy, cookie).__aenter__()
        assert (await next_json(ws))["state"] == "ready"
        if sample(await asyncio.to_thread(scrape, metrics_port), "parla_learner_sockets") > before:
            return ws
        await ws.close()
    raise AssertionError(f"the proxy never sent a socket to that process in {tries} tries")


async def start_like_the_page(base_url: str, cookie: str, tries: int = 10) -> int:
    """Start a session as the page does, reconnecting after a 4012 (a draining process); returns how
    many times it was moved before its session started. Then stops it."""
    moved = 0
    for _ in range(tries):
        async with tutor_socket(base_url, cookie) as ws:
            try:
                if (await next_json(ws, 10))["state"] != "ready":
                    continue
                await ws.send(json.dumps({"type": "session.start"}))
                while (event := await next_json(ws, 10))["type"] != "state" or event["state"] == "ready":
                    pass
                await ws.send(json.dumps({"type": "session.stop"}))
                return moved
            except websockets.ConnectionClosed:
                assert ws.close_code == CLOSE_SERVICE_RESTART, ws.close_code
                moved += 1
    raise AssertionError(f"no session started in {tries} tries")


def test_two_processes_behind_nginx_share_learners_and_one_drains(simulator, make_user):
    layer = redis_url()
    simulator.set_knobs(true_level="A1")
    teacher = login_cookie(make_user("watcher", teacher=True))
    learners = [login_cookie(make_user(f"proxied-{i}", learner=True)) for i in range(LEARNERS)]
    late = login_cookie(make_user("late-comer", learner=True))
    metrics = [free_port(), free_port()]
    shared = {"CHANNELS_PREFIX": f"parla-proxy-{free_port()}", "PARLA_DRAIN_SECONDS": "2"}

    with (
        production_server(realtime_url=simulator.url, redis_url=layer, extra_env={**shared, "PARLA_METRICS_PORT": str(metrics[0])}) as a,
        production_server(realtime_url=simulator.url, redis_url=layer, extra_env={**shared, "PARLA_METRICS_PORT": str(metrics[1])}) as b,
        nginx_proxy([int(a.rsplit(":", 1)[1]), int(b.rsplit(":", 1)[1])]) as proxy,
    ):
        async def scenario():
            seen: list[dict] = []
            watcher = asyncio.create_task(watch(a, teacher, seen))  # on process A, not through the proxy
            # Learners who think a second before each answer: their placements outlast the drain.
            runs = [asyncio.create_task(run_learner(proxy, cookie, level="A1", speaks=False, think=1.0, timeout=90))
                    for cookie in learners]
            deadline = time.monotonic() + 60
            while True:  # every learner has two answers rated (a level to deliver), on both processes
                running = [sample(await asyncio.to_thread(scrape, port), "parla_sessions_running") for port in metrics]
                rated = await asyncio.to_thread(rated_answers)
                if all(running) and len(rated) == LEARNERS and min(rated) >= 2:
                    break
                assert time.monotonic() < deadline, (running, rated)
                await asyncio.sleep(0.1)  # polling the scrape and the database
            idle = await idle_socket_on(proxy, late, metrics[1])  # a page open on B, not started yet
            b.process.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            while (await asyncio.to_thread(http_get, b + "/readyz", 2))[0] != 503:
                assert time.monotonic() - sent < 5
            not_ready_after = time.monotonic() - sent
            await asyncio.wait_for(idle.wait_closed(), 5)  # B moves it on at once: the page reconnects
            moved = (idle.close_code == CLOSE_SERVICE_RESTART) + await start_like_the_page(proxy, late)
            done = await asyncio.gather(*runs)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            return running, not_ready_after, moved, done, seen

        running, not_ready_after, moved, runs, seen = asyncio.run(scenario())
        b_exit = b.process.wait(timeout=30)  # B drained and exited by itself
        assert http_get(a + "/readyz") == (200, "ready\n")  # A is untouched
        after_on_a = scrape(metrics[0])
        open_upstream = simulator.wait_all_closed(10)

    assert running[0] >= 1 and running[1] >= 1  # the proxy spread the learners over both processes
    assert not_ready_after < 1.0
    # The page open on B was moved (4012) and its session started on A, through the proxy (B refused it
    # with 4012 again if the proxy sent it there first).
    assert moved >= 1
    assert sample(after_on_a, "parla_sessions_ended_total", reason="learner_stopped") == 1, moved
    assessments = {
        x.learner.user.username: x
        for x in Assessment.objects.filter(learner__user__username__startswith="proxied-").select_related("session", "learner__user")
    }
    assert len(assessments) == LEARNERS and all(x.status == Assessment.Status.DELIVERED for x in assessments.values())
    # Which process served each session (TutorSession.served_by: host:pid:tag).
    on_b = [x for x in assessments.values() if f":{b.pid}:" in x.session.served_by]
    on_a = [x for x in assessments.values() if f":{a.pid}:" in x.session.served_by]
    assert on_a and on_b and len(on_a) + len(on_b) == LEARNERS
    for i, run in enumerate(runs):  # every learner, on either process: its level delivered
        assessment = assessments[f"proxied-{i}"]
        assert run.of_type("assessment")[-1]["status"] == "delivered"
        assert run.of_type("assessment")[-1]["level"] == assessment.level == "A1"
        errors = [e["code"] for e in run.of_type("error")]
        if assessment in on_a:  # the other process's learners see nothing of the drain
            assert errors == [] and assessment.session.end_reason in ("ceiling", "top"), errors
        else:  # ended by the drain (or by their ceiling first); an answer typed after that is refused
            assert set(errors) <= {"placement_ended"}, errors
            assert assessment.session.end_reason in ("ceiling", "top", "server_drain")
    # The teacher watching on A saw B's sessions (announced through Redis), through to their end.
    watched = {s["session_id"]: s for s in seen}
    for x in on_b:
        assert x.session_id in watched, (x.session_id, sorted(watched))
    ended_on_b = {x.session.end_reason for x in on_b}
    print(f"deploy: {len(on_a)} on A, {len(on_b)} on B (ended {sorted(ended_on_b)}); delivered "
          f"{sum(x.status == Assessment.Status.DELIVERED for x in assessments.values())}/{LEARNERS}; B not ready after "
          f"{not_ready_after:.3f} s; B exit {b_exit}; upstream left open {open_upstream}")
    assert b_exit == 0 and open_upstream == 0
