"""What a dead server process left behind: sessions with no end, assessments nobody will deliver.

A running session names the process that runs it (`served_by`), which holds a lease for as long as it
lives (assessments.leases), and writes a heartbeat (`services.heartbeat`, every PARLA_HEARTBEAT_SECONDS).
A session whose process holds no lease, or (where leases cannot be seen) whose heartbeat is older than
PARLA_STALE_SECONDS, belongs to a process that is gone (`kill -9`, a crash, a lost machine): `sweep`
ends it (`server_restart`). A placement it cut short gets its assessment from the judgements stored as
they were made (`keep_interrupted`: partial, or not_rated with the reason). Its pending assessment is
graded under a claim (`services.claim`: exactly one process grades it) and marked delivery_failed,
since nobody spoke the summary. Live sessions of other processes hold their leases and fresh
heartbeats and are never touched. `grade_pending` (the operator's command) uses `grade_claimed` too.

A session detached awaiting its learner (assessments.reconnection) is not a dead process's: the sweep
leaves it alone for PARLA_RESUME_SECONDS, then ends it `learner_left` with what its judgements give.

Each server process runs `sweep` when it starts serving and then periodically (tutor/recovery.py).
"""

from __future__ import annotations

import logging

from channels.db import database_sync_to_async
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from assessments import leases, reconnection, services
from assessments.grading import GradeInput, Grader, GradeResult, fallback_grade, reconcile
from assessments.models import Assessment, TutorSession

logger = logging.getLogger(__name__)

db = database_sync_to_async
RESTART_REASON = "server restarted before the summary was spoken"
INTERRUPTED_REASON = "the server stopped during the placement"


def _dead_processes() -> set[str]:
    """Processes named on work not done (open sessions, undelivered assessments, placements the sweep
    ended) that hold no lease: they died (assessments.leases)."""
    named = (
        TutorSession.objects.exclude(served_by="")
        .filter(
            Q(ended_at__isnull=True)
            | Q(assessment__status__in=(Assessment.Status.PENDING, Assessment.Status.GRADED))
            | Q(end_reason=TutorSession.EndReason.SERVER_RESTART, assessment__isnull=True)
        )
        .values_list("served_by", flat=True)
        .distinct()
    )
    return leases.dead(named)


def _silent_sessions():
    """Sessions whose process died: it holds no lease, or (where leases cannot be seen, and for rows
    from before them) it stopped writing heartbeats (rows from before heartbeats: since they started)."""
    return TutorSession.objects.alias(alive_at=Coalesce("heartbeat_at", "started_at")).filter(
        Q(alive_at__lt=services.stale_before()) | Q(served_by__in=_dead_processes())
    )


def end_silent_sessions() -> list[int]:
    """End every open session whose process died; returns their ids (each ended by one sweep only)."""
    with transaction.atomic():
        ids = list(
            _silent_sessions()
            .filter(ended_at__isnull=True, detached_at__isnull=True)  # detached: awaiting its learner (reconnection)
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)
        )
        TutorSession.objects.filter(pk__in=ids, ended_at__isnull=True).update(
            ended_at=timezone.now(), end_reason=TutorSession.EndReason.SERVER_RESTART
        )
    return ids


def interrupted_placements() -> list[int]:
    """Sessions ended by a sweep (their process died) before placement had made an assessment."""
    return list(
        TutorSession.objects.filter(end_reason=TutorSession.EndReason.SERVER_RESTART, assessment__isnull=True)
        .values_list("pk", flat=True)
    )


def keep_interrupted(session_id: int) -> tuple[int, bool]:
    """The assessment of a placement its process's death cut short, from the judgements stored as they
    were made: `partial` ("at least" the floor) and pending, for the sweep to grade; or not_rated,
    with the reason, when too few answers were rated. Returns (assessment id, rated)."""
    return services.keep_stored_placement(session_id, TutorSession.EndReason.SERVER_RESTART, INTERRUPTED_REASON)


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
    interrupted = {}
    for session_id in await db(interrupted_placements)():
        assessment_id, rated = await db(keep_interrupted)(session_id)
        interrupted[assessment_id] = rated
        logger.warning(
            "interrupted placement kept",
            extra={"session_id": session_id, "assessment_id": assessment_id, "rated": rated},
        )
    recovered = await _end_expired(grader, claimer)
    for assessment_id in await db(orphaned_assessments)():
        await grade_claimed(assessment_id, grader, claimer)
        reason = f"{INTERRUPTED_REASON}; the level is from the answers judged before it" if assessment_id in interrupted else RESTART_REASON
        if await db(services.mark_delivery_failed)(assessment_id, reason):
            recovered.append(assessment_id)
            logger.warning("assessment recovered", extra={"assessment_id": assessment_id, "claimer": claimer})
    return ended, recovered


async def _end_expired(grader: Grader, claimer: str) -> list[int]:
    """Detached sessions whose learner did not come back within PARLA_RESUME_SECONDS end as leaving
    ends a placement: `learner_left`, with what their stored judgements give, graded and kept
    (delivery_failed: nobody spoke it), or not rated. Returns the assessments kept."""
    kept = []
    for session_id in await db(reconnection.expired_sessions)():
        assessment_id, rated = await db(reconnection.end_expired)(session_id)
        if assessment_id is None:
            continue  # another process's sweep ended it
        logger.warning("detached session ended", extra={"session_id": session_id, "assessment_id": assessment_id,
                                                        "rated": rated, "reason": "learner_left"})
        if rated:
            await grade_claimed(assessment_id, grader, claimer)
            if await db(services.mark_delivery_failed)(assessment_id, reconnection.LEFT_REASON):
                kept.append(assessment_id)
    return kept
