"""Delete learners' recorded answers older than PARLA_AUDIO_RETENTION_DAYS (run it daily, e.g. from cron)."""

import logging
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from assessments.models import Turn

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Delete learner audio files older than PARLA_AUDIO_RETENTION_DAYS; the turns' text stays."

    def add_arguments(self, parser):
        parser.add_argument(
            "--days", type=int, default=None, help="Retention in days (default: PARLA_AUDIO_RETENTION_DAYS)."
        )

    def handle(self, *args, days=None, **options):
        days = settings.PARLA_AUDIO_RETENTION_DAYS if days is None else days
        cutoff = timezone.now() - timedelta(days=days)
        expired = Turn.objects.filter(created_at__lt=cutoff).exclude(audio="").only("pk", "audio")
        deleted = 0
        for turn in expired.iterator():
            turn.audio.delete(save=False)  # the storage's delete: a file already gone is not an error
            Turn.objects.filter(pk=turn.pk).update(audio="")
            deleted += 1
        logger.info("expired turn audio deleted", extra={"deleted": deleted, "retention_days": days})
        self.stdout.write(f"deleted {deleted} audio file(s) older than {days} day(s)")
