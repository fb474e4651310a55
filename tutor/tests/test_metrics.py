"""The metrics port of a live Daphne process (tutor/metrics.py), scraped while a learner's session runs
and after it: the gauge follows the running session, a refusal at capacity is counted by its cause,
and one handover is observed once in each of its histograms, its assessment's statuses counted."""

from __future__ import annotations

import asyncio
import json

import pytest

from tutor.realtime.wire import CLOSE_TRY_AGAIN_LATER
from tutor.tests.live import ThreadedSimulator, daphne_server, free_port
from tutor.tests.ops_support import http_get, sample, scrape
from tutor.tests.test_end_to_end import login_cookie, next_json, run_learner, tutor_socket

pytestmark = pytest.mark.django_db(transaction=True)

HISTOGRAMS = ("parla_handover_dead_air_seconds", "parla_handover_first_summary_audio_seconds", "parla_grading_seconds")


@pytest.fixture(scope="module")
def simulator():
    with ThreadedSimulator(pace=0.0, seed=11, audio_ms_per_response=300) as sim:
        yield sim


def test_counters_and_histograms_move_as_a_session_goes(simulator, make_user):
    simulator.set_knobs(true_level="A1")
    metrics_port = free_port()
    learner = login_cookie(make_user("measured", learner=True))
    second = login_cookie(make_user("turned-away", learner=True))

    async def scenario(base_url):
        before = await asyncio.to_thread(scrape, metrics_port)
        session = asyncio.create_task(run_learner(base_url, learner, level="A1", speaks=False, timeout=60))
        while sample(await asyncio.to_thread(scrape, metrics_port), "parla_sessions_running") != 1:
            assert not session.done(), session
            await asyncio.sleep(0.05)  # polling the scrape, as Prometheus would
        # The process runs its maximum (1): the next learner is refused, counted as `capacity`.
        async with tutor_socket(base_url, second) as ws:
            assert (await next_json(ws))["state"] == "ready"
            await ws.send(json.dumps({"type": "session.start"}))
            while (await next_json(ws)).get("code") != "at_capacity":
                pass
            await asyncio.wait_for(ws.wait_closed(), 5)
            assert ws.close_code == CLOSE_TRY_AGAIN_LATER
        during = await asyncio.to_thread(scrape, metrics_port)
        run = await session
        after = await asyncio.to_thread(scrape, metrics_port)
        return before, during, after, run

    with daphne_server(realtime_url=simulator.url, redis_url=None,
                       extra_env={"PARLA_METRICS_PORT": str(metrics_port), "PARLA_MAX_SESSIONS_PER_PROCESS": "1"}) as base_url:
        before, during, after, run = asyncio.run(scenario(base_url))
        # The public port serves no metrics (only the metrics port does).
        assert http_get(base_url + "/metrics")[0] == 404

    assert run.of_type("assessment")[-1]["status"] == "delivered"
    assert sample(during, "parla_sessions_running") == 1
    assert sample(after, "parla_sessions_refused_total", cause="capacity") - sample(before, "parla_sessions_refused_total", cause="capacity") == 1
    ended = sample(after, "parla_sessions_ended_total", reason="ceiling") - sample(before, "parla_sessions_ended_total", reason="ceiling")
    assert ended == 1
    for name in HISTOGRAMS:  # one handover, observed once in each
        assert sample(before, name + "_count") == 0
        assert sample(after, name + "_count") == 1, name
        assert sample(after, name + "_sum") > 0, name
    dead_air = sample(after, "parla_handover_dead_air_seconds_sum")
    assert dead_air < 5  # the feedback followed the grade within the step timeout
    for status in ("pending", "graded", "delivered"):
        assert sample(after, "parla_assessments_total", status=status) == 1, status
    assert sample(after, "parla_assessments_total", status="delivery_failed") == 0
