"""Grade every assessment left pending (the server stopped between the ceiling and the grade)."""

import asyncio

from django.core.management.base import BaseCommand

from assessments.grading import get_grader
from assessments.models import Assessment
from assessments.services import grade_input_from_db, save_grade


class Command(BaseCommand):
    help = "Grade assessments still pending; they stay stored and show up graded in the learner's history."

    def handle(self, *args, **options):
        grader = get_grader()
        pending = list(Assessment.objects.filter(status=Assessment.Status.PENDING).select_related("session", "learner"))
        for assessment in pending:
            result = asyncio.run(grader.grade(grade_input_from_db(assessment)))
            save_grade(assessment.pk, result)
            self.stdout.write(f"assessment {assessment.pk}: {result.level} by {result.grader}")
        self.stdout.write(f"graded {len(pending)} pending assessment(s)")
