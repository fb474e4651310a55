"""run_worker, the compose file's `worker`: grade_pending and delete_expired_audio on their schedule, in
a real process on the test database, until SIGTERM ends it at once. Here, not in
assessments/tests: it uses tutor's live-process helpers, and `assessments` imports nothing from `tutor`."""

import signal
import subprocess
import sys
import time

import pytest

from assessments.management.commands.run_worker import next_due
from assessments.models import Assessment
from assessments.tests.test_grade_pending import pending_assessment
from config.tests.helpers import REPO, clean_env
from tutor.tests.live import database_url
from tutor.tests.ops_support import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_next_due_is_the_job_whose_period_ends_first():
    schedule = {"grade_pending": 300.0, "delete_expired_audio": 86400.0}
    assert next_due(schedule, {})[1] == float("-inf")  # never run: due now
    assert next_due(schedule, {"grade_pending": 100.0, "delete_expired_audio": 0.0}) == ("grade_pending", 400.0)
    assert next_due(schedule, {"grade_pending": 90000.0, "delete_expired_audio": 0.0}) == ("delete_expired_audio", 86400.0)


def test_the_worker_grades_what_is_left_pending_on_its_schedule_and_stops_on_sigterm(learner_user, tmp_path):
    ladder = [("A1", "sustained"), ("A1", "sustained"), ("A2", "breakdown"), ("A2", "breakdown")]
    first = pending_assessment(learner_user.learner, ladder)
    out = tmp_path / "worker.out"
    with open(out, "w") as log:
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "run_worker", "--grade-every", "0.5", "--audio-every", "0.5"],
            cwd=REPO, env=clean_env(DATABASE_URL=database_url(), DJANGO_SETTINGS_MODULE="config.settings"),
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: Assessment.objects.get(pk=first.pk).status == Assessment.Status.GRADED, 30, "the first grade")
        second = pending_assessment(learner_user.learner, ladder)  # left pending after the worker's first run
        wait_for(lambda: Assessment.objects.get(pk=second.pk).status == Assessment.Status.GRADED, 10, "the next turn")
        wait_for(lambda: out.read_text().count("audio file(s) older than") >= 2, 10, "delete_expired_audio twice")
        worker.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        assert worker.wait(timeout=5) == 0, out.read_text()
        assert time.monotonic() - stopped < 2  # the wait ends at once, not at the next turn
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert Assessment.objects.get(pk=first.pk).level == "A1"
