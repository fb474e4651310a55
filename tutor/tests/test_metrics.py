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
        # The learner thinks before typing, as a person does: answering at every turn of a pace-0 tutor
        # heard at 20x, it outran the server's limit on written answers (2 a second after a burst of 10),
        # an answer was refused and the placement waited for it (seen in full runs of the suite).
        session = asyncio.create_task(run_learner(base_url, learner, level="A1", speaks=False, timeout=60, think=0.6))
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


def counted(name: str, **labels) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_upstream_errors_failed_responses_and_stalls_are_counted_by_code():
    """The hooks fed with server events in the API's shapes (parsed by the client's own parse path; the
    failed response is the capture the simulator reproduces, openai/openai-python#2502) and with the
    loop watch's own stalls."""
    from tutor import metrics
    from tutor.loopwatch import LoopWatch
    from tutor.realtime.schemas import parse_server_event

    error = parse_server_event(json.dumps({
        "type": "error", "event_id": "event_1",
        "error": {"type": "invalid_request_error", "code": "cannot_update_voice",
                  "message": "Cannot update a conversation's voice if assistant audio is present.",
                  "param": None, "event_id": "evt_client_1"},
    }))
    failed = parse_server_event(json.dumps({
        "type": "response.done", "event_id": "event_2",
        "response": {"object": "realtime.response", "id": "resp_1", "status": "failed", "output": [],
                     "status_details": {"type": "failed", "error": {
                         "type": "tokens", "code": "inference_rate_limit_exceeded",
                         "message": "We're currently processing too many requests \u2014 please try again later."}}},
    }))
    completed = parse_server_event(json.dumps({
        "type": "response.done", "event_id": "event_3",
        "response": {"object": "realtime.response", "id": "resp_2", "status": "completed", "output": []},
    }))
    errors_before = counted("parla_upstream_errors_total", code="cannot_update_voice")
    failed_before = counted("parla_upstream_failed_responses_total", code="inference_rate_limit_exceeded")
    for event in (error, failed, completed):
        metrics.upstream_event(event)
    assert counted("parla_upstream_errors_total", code="cannot_update_voice") - errors_before == 1
    assert counted("parla_upstream_failed_responses_total", code="inference_rate_limit_exceeded") - failed_before == 1

    stalls_before = counted("parla_event_loop_stalls_total")
    watch = LoopWatch(stall_ms=100)
    watch.record(1.0, 5.0)  # on time
    watch.record(2.0, 250.0)  # a stall
    assert counted("parla_event_loop_stalls_total") - stalls_before == 1
