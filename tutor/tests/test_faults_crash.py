"""A placement's result survives a crash of its server (issue 27, item 2).

A live Daphne is killed with SIGKILL mid-placement and another one started on the same database. With
the default PARLA_STALE_SECONDS (60 s): the restarted server sees at once that the dead process holds
no lease (assessments.leases), ends its sessions, and keeps each interrupted placement from the
judgements stored as they were made: "at least" the floor when enough answers were rated, not rated
(with the reason) otherwise; the learner's history and the teacher's admin show it. A claim on
pending work dies with its process too: `grade_pending` right after the kill grades what the dead
process had claimed instead of skipping it for 60 s.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from django.core.management import call_command
from django.test import Client

from assessments import leases
from assessments.models import Assessment, Probe, TutorSession
from assessments.recovery import INTERRUPTED_REASON
from tutor.testing.learners import written_answer

from .live import ROOT, ThreadedSimulator, parla_server
from .test_faults_numbers import login, open_tutor, read_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)  # polling the database another process writes
    return result


def probes_of(username: str) -> int:
    return Probe.objects.filter(session__learner__user__username=username).count()


async def answer(base_url, cookie, username: str, answers: int):
    """A learner who answers in writing `answers` times, each judged (its Probe row stored) before the
    next; the socket stays open (the server is killed under it)."""
    ws = await open_tutor(base_url, cookie)
    await ws.send(json.dumps({"type": "session.start"}))
    await read_until(ws, lambda e: e["type"] == "audio.end", 30)
    for n in range(1, answers + 1):
        await ws.send(json.dumps({"type": "answer.text", "text": written_answer("B1")}))
        await asyncio.to_thread(wait_until, lambda: probes_of(username) >= n, 30, f"{username}'s answer {n} judged")
    return ws


def test_placements_cut_short_by_kill_9_are_kept_partial_or_not_rated_after_a_restart(make_user):
    rated, few = login(make_user, "three"), login(make_user, "one")
    teacher = make_user("teacher", teacher=True)

    async def learners(url):
        return [await answer(url, rated, "three", 3), await answer(url, few, "one", 1)]

    with ThreadedSimulator(pace=0.0, seed=11) as sim:
        with parla_server(realtime_url=sim.url) as crashed:
            sockets = asyncio.new_event_loop()
            open_sockets = sockets.run_until_complete(learners(crashed.url))
            crashed.process.send_signal(signal.SIGKILL)
            crashed.process.wait()
            for ws in open_sockets:
                sockets.run_until_complete(ws.close())
            sockets.close()
            killed_at = time.monotonic()
        assert not Assessment.objects.exists()  # what the crash left: sessions open, no assessment
        assert TutorSession.objects.filter(ended_at__isnull=True).count() == 2
        with parla_server(realtime_url=sim.url) as restarted:
            kept = wait_until(
                lambda: Assessment.objects.filter(status__in=("delivery_failed", "not_rated")).count() == 2,
                30, "both interrupted placements kept",
            )
            took = time.monotonic() - killed_at
            log = restarted.log()
    print(f"kept {took:.1f} s after the kill")
    assert kept and took < 45  # well before the 60 s a heartbeat takes to go stale
    three = Assessment.objects.get(learner__user__username="three")
    one = Assessment.objects.get(learner__user__username="one")
    assert three.session.end_reason == one.session.end_reason == TutorSession.EndReason.SERVER_RESTART
    assert three.partial and three.level == "A1" and three.status == Assessment.Status.DELIVERY_FAILED
    assert three.failure_reason.startswith(INTERRUPTED_REASON) and three.grader == "rules" and three.summary
    assert one.status == Assessment.Status.NOT_RATED and not one.level
    assert one.failure_reason.startswith(INTERRUPTED_REASON) and "1 rated answer" in one.failure_reason
    assert log.count("interrupted placement kept") == 2

    learner = Client()
    learner.force_login(three.learner.user)
    page = learner.get(f"/history/{three.pk}/").content.decode()
    assert "at least" in page and "server stopped during this session" in page
    learner.force_login(one.learner.user)
    page = learner.get(f"/history/{one.pk}/").content.decode()
    assert "Not rated" in page and "server stopped during this session" in page
    desk = Client()
    desk.force_login(teacher)
    page = desk.get(f"/admin/assessments/assessment/{one.pk}/change/").content.decode()
    assert INTERRUPTED_REASON in page


def test_a_claim_dies_with_its_process(make_user):
    """A process claims a pending assessment and is killed with SIGKILL: grade_pending at once grades
    it, instead of skipping it as claimed until the claim is 60 s old."""
    learner = make_user("pending", learner=True).learner
    session = TutorSession.objects.create(learner=learner, upstream="simulator", model="m", target_language="es")
    for outcome in ("sustained", "sustained", "breakdown", "breakdown"):
        Probe.objects.create(session=session, level="A1", outcome=outcome)
    assessment = Assessment.objects.create(learner=learner, session=session, level="A1")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    from .live import database_url

    env["DATABASE_URL"] = database_url()
    claimer = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c",
         "from assessments import services; import sys, time; "
         f"print(services.claim({assessment.pk}, services.process_id()), services.process_id(), flush=True); "
         "time.sleep(120)"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        claimed, claimer_id = claimer.stdout.readline().split()
        assert claimed == "True"
        call_command("grade_pending")  # the claimer lives: its claim holds
        assert Assessment.objects.get(pk=assessment.pk).status == Assessment.Status.PENDING
    finally:
        claimer.send_signal(signal.SIGKILL)
        claimer.wait()
    # PostgreSQL ends the dead process's connection (and its lease) as soon as it reads the closed socket
    wait_until(lambda: not leases.alive([claimer_id]), 10, "the killed process's lease released")
    call_command("grade_pending")
    assessment.refresh_from_db()
    assert assessment.status == Assessment.Status.GRADED and assessment.grader == "rules"
