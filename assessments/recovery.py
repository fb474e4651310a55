"""What a dead server process left behind: sessions with no end, assessments nobody will deliver.

A running session writes a heartbeat (`services.heartbeat`, every PARLA_HEARTBEAT_SECONDS) from the
process that runs it. A session whose heartbeat is older than PARLA_STALE_SECONDS belongs to a process
that is gone (`kill -9`, a crash, a lost machine): `sweep` ends it (`server_restart`), grades its
pending assessment under a claim (`services.claim`: exactly one process grades it) and marks it
delivery_failed, since nobody spoke the summary. Live sessions of other processes have fresh
heartbeats and are never touched. `grade_pending` (the operator's command) uses `grade_claimed` too.

Each server process runs `sweep` when it starts serving and then periodically (tutor/recovery.py).
"""

from __future__ import annotations

import logging

from channels.db import database_sync_to_async
from django.db import transaction
from django.db.models.functions import Coalesce
from django.utils import timezone

from assessments import services
from assessments.grading import GradeInput, Grader, GradeResult, fallback_grade, reconcile
from assessments.models import Assessment, TutorSession

logger = logging.getLogger(__name__)

db = database_sync_to_async
RESTART_REASON = "server restarted before the summary was spoken"


def _silent_sessions():
    """Sessions whose process stopped writing heartbeats (rows from before heartbeats: since they started)."""
    return TutorSession.objects.alias(alive_at=Coalesce("heartbeat_at", "started_at")).filter(
        alive_at__lt=services.stale_before()
    )


def end_silent_sessions() -> list[int]:
    """End every open session whose process died; returns their ids (each ended by one sweep only)."""
    with transaction.atomic():
        ids = list(
            _silent_sessions()
            .filter(ended_at__isnull=True)
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)
        )
        TutorSession.objects.filter(pk__in=ids, ended_at__isnull=True).update(
            ended_at=timezone.now(), end_reason=TutorSession.EndReason.SERVER_RESTART
        )
    return ids


def orphaned_assessments() -> list[int]:
    """Undelivered assessments of sessions whose process died (`grade_claimed` decides who grades)."""
    return list(
        Assessment.objects.filter(
            session__in=_silent_sessions(), status__in=(Assessment.Status.PENDING, Assessment.Status.GRADED)
        ).values_list("pk", flat=True)
    )


def pending_assessments() -> list[int]:
    return list(Assessment.objects.filter(status=Assessment.Status.PENDING).values_list("pk", flat=True))


def claim_for_grading(assessment_id: int, claimer: str) -> GradeInput | None:
    """Claim a pending assessment; what the grader needs, or None if another process has it."""
    if not services.claim(assessment_id, claimer):
        return None
    assessment = Assessment.objects.select_related("session", "learner").get(pk=assessment_id)
    return services.grade_input_from_db(assessment)


async def grade_safely(grader: Grader, data: GradeInput) -> GradeResult:
    try:
        return reconcile(data, await grader.grade(data))  # whatever the grader, a consistent card
    except Exception as exc:  # the rules always have an answer
        return fallback_grade(data, exc)


def store_grade(assessment_id: int, result: GradeResult, claimer: str) -> bool:
    """Save the grade under `claimer`'s claim; False if the claim went stale and another process graded it."""
    if not services.save_grade(assessment_id, result, claimer):
        return False
    logger.info("assessment graded", extra={"assessment_id": assessment_id, "grader": result.grader, "claimer": claimer})
    return True


async def grade_claimed(assessment_id: int, grader: Grader, claimer: str) -> GradeResult | None:
    """Claim, grade and store a pending assessment from what was stored; None if another process has it."""
    data = await db(claim_for_grading)(assessment_id, claimer)
    if data is None:
        return None
    result = await grade_safely(grader, data)
    return result if await db(store_grade)(assessment_id, result, claimer) else None


async def sweep(grader: Grader, claimer: str | None = None) -> tuple[list[int], list[int]]:
    """One pass: end sessions of dead processes, grade and fail what they left. Returns (sessions, assessments)."""
    claimer = claimer or services.process_id()
    ended = await db(end_silent_sessions)()
    for session_id in ended:
        logger.warning("session ended by recovery", extra={"session_id": session_id, "reason": "server_restart"})
    recovered = []
    for assessment_id in await db(orphaned_assessments)():
        await grade_claimed(assessment_id, grader, claimer)
        if await db(services.mark_delivery_failed)(assessment_id, RESTART_REASON):
            recovered.append(assessment_id)
            logger.warning("assessment recovered", extra={"assessment_id": assessment_id, "claimer": claimer})
    return ended, recovered
