"""The handover's AssessmentStore on the Assessment model (assessments.services, run in a thread)."""

from __future__ import annotations

from channels.db import database_sync_to_async

from assessments import services
from assessments.grading import GradeResult
from tutor.runtime.delivery import AssessmentStore


class DjangoAssessmentStore(AssessmentStore):
    """AssessmentStore on the Assessment model."""

    async def graded(self, assessment_id: int, result: GradeResult) -> None:
        await database_sync_to_async(services.save_grade)(assessment_id, result)

    async def delivered(self, assessment_id: int, notes: str) -> None:
        await database_sync_to_async(services.mark_delivered)(assessment_id, notes)

    async def failed(self, assessment_id: int, reason: str) -> None:
        await database_sync_to_async(services.mark_delivery_failed)(assessment_id, reason)

