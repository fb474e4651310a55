"""The handover's AssessmentStore on the Assessment model (assessments.services, run in a thread), and
the ids of a session's rows."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from channels.db import database_sync_to_async

from assessments import services
from assessments.grading import GradeResult
from tutor import metrics
from tutor.runtime.handover import AssessmentStore

logger = logging.getLogger(__name__)


class DjangoAssessmentStore(AssessmentStore):
    """AssessmentStore on the Assessment model.

    This process claimed the assessment when it created it (services.create_assessment) and its
    session's heartbeat keeps the claim fresh, so the grade is stored under that claim: if this
    process was taken for dead and another one graded the assessment, that grade stays.
    """

    async def graded(self, assessment_id: int, result: GradeResult) -> None:
        if not await database_sync_to_async(services.save_grade)(assessment_id, result):
            logger.warning("grade not stored: graded by another process", extra={"assessment_id": assessment_id})
            return
        metrics.assessment("graded")

    async def delivered(self, assessment_id: int, notes: str) -> None:
        await database_sync_to_async(services.mark_delivered)(assessment_id, notes)
        metrics.assessment("delivered")

    async def failed(self, assessment_id: int, reason: str) -> None:
        if await database_sync_to_async(services.mark_delivery_failed)(assessment_id, reason):
            metrics.assessment("delivery_failed")


@dataclass
class SessionRows:
    """The ids of a session's rows, set as they are created: shared by the runtime and its parts."""

    session_id: int | None = None  # TutorSession, from the start
    assessment_id: int | None = None  # Assessment (pending or not rated), once the placement is over
