"""The worker of a deployment: `grade_pending` and `delete_expired_audio` on a schedule, until SIGTERM.

One long-running process (docker-compose's `worker` service) instead of a cron in every web container:
grading claims each assessment (assessments.services.claim), so a worker beside live servers never
grades one twice. Each job runs at start and then every `--grade-every` / `--audio-every` seconds; a
job that fails is logged and tried again at its next turn. SIGTERM (a deploy, `docker compose stop`)
ends the wait at once, never a job halfway.
"""

import logging
import signal
import threading
import time

from django.core.management import call_command
from django.core.management.base import BaseCommand

logger = logging.getLogger(__name__)


def next_due(schedule: dict[str, float], last: dict[str, float]) -> tuple[str, float]:
    """The job due first and when, from each job's period and its last run (monotonic seconds)."""
    return min(((job, last.get(job, float("-inf")) + every) for job, every in schedule.items()), key=lambda d: d[1])


class Command(BaseCommand):
    help = "Run grade_pending and delete_expired_audio on a schedule until SIGTERM (the compose worker)."

    def add_arguments(self, parser):
        parser.add_argument("--grade-every", type=float, default=300.0, help="seconds between grade_pending runs")
        parser.add_argument("--audio-every", type=float, default=86400.0,
                            help="seconds between delete_expired_audio runs")

    def handle(self, *args, grade_every, audio_every, **options):
        stopping = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
        schedule = {"grade_pending": grade_every, "delete_expired_audio": audio_every}
        last: dict[str, float] = {}
        logger.info("worker started", extra={"schedule": schedule})
        while not stopping.is_set():
            job, due = next_due(schedule, last)
            if stopping.wait(max(0.0, due - time.monotonic())):  # the schedule's wait; SIGTERM ends it
                break
            last[job] = time.monotonic()
            try:
                call_command(job, stdout=self.stdout)
            except Exception:  # logged; the job runs again at its next turn
                logger.exception("worker job failed", extra={"job": job})
        logger.info("worker stopped")
