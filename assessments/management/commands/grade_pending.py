"""Grade every assessment left pending (the server stopped between the ceiling and the grade).

Each one is claimed first (assessments.services.claim): one a live server is grading, or another
`grade_pending` has taken, is skipped, so no assessment is graded twice. Running servers do this by
themselves for sessions whose process died (assessments/recovery.py); this is the manual way.
"""

import asyncio

from django.core.management.base import BaseCommand

from assessments import services
from assessments.grading import get_grader
from assessments.recovery import claim_for_grading, grade_safely, pending_assessments, store_grade


class Command(BaseCommand):
    help = "Grade assessments still pending; they stay stored and show up graded in the learner's history."

    def handle(self, *args, **options):
        grader, claimer, graded = get_grader(), services.process_id(), 0
        for assessment_id in pending_assessments():
            data = claim_for_grading(assessment_id, claimer)
            result = data and asyncio.run(grade_safely(grader, data))
            if result is None or not store_grade(assessment_id, result, claimer):
                self.stdout.write(f"assessment {assessment_id}: claimed by another process, skipped")
                continue
            graded += 1
            self.stdout.write(f"assessment {assessment_id}: {result.level} by {result.grader}")
        self.stdout.write(f"graded {graded} pending assessment(s)")
