"""Crash recovery across real server processes on the test database (PostgreSQL in CI).

A server killed with `kill -9` while it grades leaves a session with no end and a pending assessment;
the servers started after it end the session (`server_restart`) and grade the assessment exactly once.
Two `grade_pending` runs at the same time grade each assessment once. A live session of another
process, whose heartbeat is fresh, is never ended by a sweep.

The slow grader is the real `openai` grader pointed (OPENAI_BASE_URL, read by the openai client) at
a local stand-in of the Responses API that answers when the test lets it: so "the server is grading"
is an event the test sees (the request arrived), not a guess.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import websockets
from django.db import connections
from django.utils import timezone

from assessments.models import Assessment, Probe, TutorSession
from assessments.recovery import RESTART_REASON
from config.tests.helpers import REPO, clean_env
from tutor.tests.live import ThreadedSimulator, database_url, parla_server
from tutor.tests.test_end_to_end import login_cookie, next_json, run_learner, tutor_socket

pytestmark = pytest.mark.django_db(transaction=True)

FAST = {"PARLA_HEARTBEAT_SECONDS": "0.5", "PARLA_STALE_SECONDS": "3"}


class FakeResponsesAPI:
    """POST /v1/responses: counts requests, holds each until `release` is set (or `hold` seconds pass),
    then answers with a valid structured assessment at the placement's level."""

    def __init__(self, hold: float = 120.0):
        self.hold = hold
        self.requests = 0
        self.requested = threading.Event()
        self.release = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.requests += 1
                api.requested.set()
                api.release.wait(api.hold)
                level = json.loads(body["input"][1]["content"])["placement"]["level"]
                verdict = {"level": level, "criteria": dict.fromkeys(
                    ("range", "accuracy", "fluency", "interaction", "coherence"),
                    {"level": level, "evidence": "", "confidence": "low"}), "feedback": "Well done.",
                    "disagreement": ""}
                payload = json.dumps({
                    "id": "resp_test", "object": "response", "created_at": 0, "status": "completed",
                    "model": "gpt-6-luna", "parallel_tool_calls": False, "tool_choice": "auto", "tools": [],
                    "output": [{"type": "message", "id": "msg_test", "status": "completed", "role": "assistant",
                                "content": [{"type": "output_text", "text": json.dumps(verdict), "annotations": []}]}],
                }).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the server that asked was killed

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.env = {
            "OPENAI_API_KEY": "sk-test-recovery",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{self.server.server_address[1]}/v1",
            "PARLA_GRADER": "openai",
            "PARLA_GRADER_TIMEOUT": "120",
            "PARLA_RATER": "offline",  # this fake API stands for the grader only
        }

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def simulator():
    with ThreadedSimulator(pace=0.0, seed=7, true_level="A1") as sim:
        yield sim


async def in_thread(query, *args, **kwargs):
    """A database query off the event loop, its connection closed after (the test database is dropped later)."""

    def run():
        try:
            return query(*args, **kwargs)
        finally:
            connections.close_all()

    return await asyncio.to_thread(run)


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)
    return result


def test_killed_server_restarted_with_pending_work_ends_the_session_and_grades_once(simulator, make_user):
    user = make_user("crashed", learner=True)
    cookie = login_cookie(user)

    async def learner_until_killed(server, grader_api):
        learner = asyncio.create_task(run_learner(server.url, cookie, level="A1", timeout=90))
        assert await asyncio.to_thread(grader_api.requested.wait, 90), "the server never started grading"
        server.process.kill()  # kill -9, mid-grading
        server.process.wait()
        done, _ = await asyncio.wait([learner], timeout=30)
        assert done and isinstance(learner.exception(), websockets.ConnectionClosed)

    with FakeResponsesAPI() as grader_api:
        with parla_server(realtime_url=simulator.url, extra_env={**grader_api.env, **FAST}) as crashed:
            asyncio.run(learner_until_killed(crashed, grader_api))
        dead_claimer = f":{crashed.process.pid}:"  # host:pid:tag (assessments.leases.process_id)

        session = TutorSession.objects.get(learner__user=user)
        assessment = Assessment.objects.get(session=session)
        assert session.ended_at is None and assessment.status == Assessment.Status.PENDING  # what the crash left
        assert dead_claimer in assessment.claimed_by

        # Two servers start after the crash (rules grader); both sweep, one of them recovers the work.
        with parla_server(realtime_url=simulator.url, extra_env=FAST) as one, \
                parla_server(realtime_url=simulator.url, extra_env=FAST) as two:
            wait_until(lambda: Assessment.objects.get(pk=assessment.pk).status == Assessment.Status.DELIVERY_FAILED,
                       60, "the assessment recovered")
            time.sleep(3)  # both go on sweeping (every 0.5 s): none may grade or end anything again
            logs = one.log() + two.log()
        assert grader_api.requests == 1  # only the killed server ever asked the slow grader

    session.refresh_from_db()
    assessment.refresh_from_db()
    assert session.ended_at is not None and session.end_reason == TutorSession.EndReason.SERVER_RESTART
    assert assessment.grader == "rules" and assessment.level == "A1" and assessment.summary
    assert assessment.failure_reason == RESTART_REASON
    assert dead_claimer not in assessment.claimed_by  # the dead server's claim was taken over
    assert logs.count("assessment graded") == 1, logs
    assert logs.count("assessment recovered") == 1, logs
    assert logs.count("session ended by recovery") == 1, logs


def pending_assessment(learner, *, heartbeat_age: float) -> Assessment:
    session = TutorSession.objects.create(
        learner=learner, upstream="simulator", model="gpt-realtime", target_language="es",
        heartbeat_at=timezone.now() - timedelta(seconds=heartbeat_age),
    )
    for outcome in ("breakdown", "breakdown"):
        Probe.objects.create(session=session, level="A1", outcome=outcome)
    return Assessment.objects.create(learner=learner, session=session, level="A1")


def test_two_concurrent_grade_pending_runs_grade_each_assessment_once(make_user):
    learner = make_user("waiting", learner=True).learner
    assessments = [pending_assessment(learner, heartbeat_age=3600) for _ in range(2)]
    with FakeResponsesAPI(hold=3) as grader_api:
        env = clean_env(DATABASE_URL=database_url(), **grader_api.env)
        runs = [
            subprocess.Popen([sys.executable, "manage.py", "grade_pending"], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outputs = [run.communicate(timeout=120) for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outputs
    assert grader_api.requests == 2, outputs  # one per assessment: neither was graded twice
    counts = sorted(int(out.split("graded ")[-1].split()[0]) for out, _ in outputs)
    assert sum(counts) == 2, outputs
    for assessment in assessments:
        assessment.refresh_from_db()
        assert assessment.status == Assessment.Status.GRADED and assessment.grader == "openai:gpt-6-luna"  # the default grader model


def test_a_live_session_of_another_process_is_left_alone(simulator, make_user):
    user = make_user("alive", learner=True)
    cookie = login_cookie(user)
    dead = pending_assessment(make_user("gone", learner=True).learner, heartbeat_age=5)

    async def learner_stays(live, sweeper_env):
        async with tutor_socket(live.url, cookie) as ws:
            await ws.send(json.dumps({"type": "session.start"}))
            while (await next_json(ws)) != {"type": "state", "state": "listening"}:
                pass
            session = await in_thread(TutorSession.objects.get, learner__user=user)
            # Another server process (Django's runserver, which is Daphne's) starts and sweeps.
            with parla_server(realtime_url=simulator.url, extra_env=sweeper_env, runserver=True) as other:
                await in_thread(
                    wait_until, lambda: Assessment.objects.get(pk=dead.pk).status == Assessment.Status.DELIVERY_FAILED,
                    30, "the dead session's assessment recovered by the new process",
                )
                # Several stale periods long, the live session stays open while the new process sweeps.
                deadline = time.monotonic() + 3 * float(sweeper_env["PARLA_STALE_SECONDS"])
                while time.monotonic() < deadline:
                    row = await in_thread(TutorSession.objects.get, pk=session.pk)
                    assert row.ended_at is None, row.end_reason
                    await asyncio.sleep(0.2)
                assert "assessment recovered" in other.log()
            await ws.send(json.dumps({"type": "answer.text", "text": "Sí, vivo en Madrid."}))
            while (event := await next_json(ws))["type"] != "transcript" or event["role"] != "learner":
                assert event["type"] != "error", event
        return session

    # The live server counts a session stale only after 10 minutes: the dead row is the new process's to find.
    with parla_server(realtime_url=simulator.url, extra_env={**FAST, "PARLA_STALE_SECONDS": "600"}) as live:
        session = asyncio.run(learner_stays(live, {**FAST, "PARLA_STALE_SECONDS": "2"}))
        # Ended by its own process, when the learner left.
        wait_until(lambda: TutorSession.objects.get(pk=session.pk).end_reason, 10, "the session ended")
    session.refresh_from_db()
    assert session.end_reason == TutorSession.EndReason.LEARNER_LEFT
    dead.session.refresh_from_db()
    assert dead.session.end_reason == TutorSession.EndReason.SERVER_RESTART
