"""A deploy moves placements instead of ending them: nginx (deploy/nginx/parla.conf) in front of two
Parla processes served as the image serves them (Daphne) on Redis and PostgreSQL, learners
driven through the proxy as the page does it.

SIGTERM to one process while placements run on both: at its drain deadline each placement still
running there is handed over (detached, 4012), its page reconnects through the proxy, lands on the
other process and continues the same placement to its level; a placement that reached its level
within the drain is delivered there. The other process's learners see nothing of it; the drained
process exits 0 with no upstream session left open.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from assessments.models import Assessment, TutorSession
from tutor.realtime.wire import CLOSE_SERVICE_RESTART
from tutor.tests.live import ThreadedSimulator, free_port, production_server
from tutor.tests.ops_support import sample, scrape
from tutor.tests.proxy import nginx_proxy
from tutor.tests.resume_support import placement
from tutor.tests.test_end_to_end import login_cookie
from tutor.tests.test_proxy import LEARNERS, rated_answers, redis_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def simulator():
    with ThreadedSimulator(pace=0.0, seed=13, audio_ms_per_response=300) as sim:
        yield sim


def test_sigterm_hands_placements_over_to_the_other_process(simulator, make_user):
    layer = redis_url()
    simulator.set_knobs(true_level="A2")
    users = [make_user(f"proxied-{i}", learner=True) for i in range(LEARNERS)]
    cookies = [login_cookie(user) for user in users]
    metrics = [free_port(), free_port()]
    shared = {"CHANNELS_PREFIX": f"parla-resume-{free_port()}", "PARLA_DRAIN_SECONDS": "2", "PARLA_RESUME_SECONDS": "120"}

    with (
        production_server(realtime_url=simulator.url, redis_url=layer, extra_env={**shared, "PARLA_METRICS_PORT": str(metrics[0])}) as a,
        production_server(realtime_url=simulator.url, redis_url=layer, extra_env={**shared, "PARLA_METRICS_PORT": str(metrics[1])}) as b,
        nginx_proxy([int(a.rsplit(":", 1)[1]), int(b.rsplit(":", 1)[1])]) as proxy,
    ):
        async def scenario():
            # A2 learners who think a second before each answer: a climb of six answers outlasts the drain.
            runs = [asyncio.create_task(placement(proxy, cookie, level="A2", think=1.0, timeout=150))
                    for cookie in cookies]
            deadline = time.monotonic() + 60
            while True:  # every learner has an answer rated, on both processes
                running = [sample(await asyncio.to_thread(scrape, port), "parla_sessions_running") for port in metrics]
                rated = await asyncio.to_thread(rated_answers)
                if all(running) and len(rated) == LEARNERS and min(rated) >= 1:
                    break
                assert time.monotonic() < deadline, (running, rated)
                await asyncio.sleep(0.1)  # polling the scrape and the database
            on_b = {s.pk for s in await asyncio.to_thread(sessions_served_by, b.pid)}
            b.process.send_signal(signal.SIGTERM)
            return on_b, await asyncio.gather(*runs)

        on_b, journeys = asyncio.run(scenario())
        b_exit = b.process.wait(timeout=30)  # B drained and exited by itself
        after_on_a = scrape(metrics[0])
        open_upstream = simulator.wait_all_closed(10)
        a_log = a.log_path.read_text()

    assert on_b and len(on_b) < LEARNERS  # the proxy spread the placements over both processes
    moved = delivered_on_b = 0
    for user, journey in zip(users, journeys):
        session = TutorSession.objects.get(learner__user=user)  # one placement per learner, whatever happened
        assessment = Assessment.objects.get(session=session)
        card = journey.of_type("assessment")[-1]
        assert card["status"] == "delivered" and card["level"] == assessment.level == "A2", (user.username, card)
        assert assessment.status == Assessment.Status.DELIVERED and not assessment.partial
        assert session.end_reason in ("ceiling", "top")
        assert journey.of_type("error") == [], journey.of_type("error")
        if session.pk not in on_b:  # the other process's learners see nothing of the drain
            assert journey.connections == 1 and journey.resumed == 0
            continue
        if journey.resumed:  # handed over at B's drain deadline: continued on A, the same session
            assert CLOSE_SERVICE_RESTART in journey.close_codes
            assert f":{a.pid}:" in session.served_by and journey.session_id == session.pk
            assert journey.ladder_after_resume is not None
            moved += 1
        else:  # reached its level within the drain: delivered on B
            assert f":{b.pid}:" in session.served_by
            delivered_on_b += 1
    print(f"deploy: {LEARNERS - len(on_b)} on A, {len(on_b)} on B; B's moved to A {moved}, delivered on B "
          f"{delivered_on_b}; B exit {b_exit}; upstream left open {open_upstream}")
    assert moved + delivered_on_b == len(on_b) and moved >= 1, (moved, delivered_on_b)
    assert sample(after_on_a, "parla_session_reconnections_total", event="resumed") == moved
    assert "session resumed" in a_log
    assert b_exit == 0 and open_upstream == 0


def sessions_served_by(pid: int) -> list[TutorSession]:
    from django.db import connections

    try:
        return list(TutorSession.objects.filter(served_by__contains=f":{pid}:", ended_at__isnull=True))
    finally:
        connections.close_all()
