"""`python manage.py rater_eval FILE.csv`: the configured rater against a teacher-labelled set.

The rater is the one sessions use (`get_rater()`: the model rater with an API key, the offline rule
without). See assessments.rating.evaluation for the format and the figures.
"""

import asyncio

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from assessments.rating import get_rater
from assessments.rating.evaluation import LabelledSetError, evaluate, read_labelled, report


class Command(BaseCommand):
    help = "Rate a labelled CSV set (language, level, text[, question]) with the configured rater; print agreement."

    def add_arguments(self, parser):
        parser.add_argument("file", help="CSV with a header: language, level, text, and optionally question")

    def handle(self, *args, **options):
        try:
            with open(options["file"], newline="", encoding="utf-8-sig") as source:
                items = read_labelled(source)
        except OSError as exc:
            raise CommandError(f"cannot read {options['file']}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{options['file']} is not UTF-8 text") from None
        except LabelledSetError as exc:
            raise CommandError(f"{options['file']}: {exc}") from None
        try:
            rater = get_rater()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(report(asyncio.run(evaluate(rater, items))))
