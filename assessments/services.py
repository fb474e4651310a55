"""Database work of a tutor session, as plain synchronous functions (wrapped for async callers).

The consumer and the session runtime never touch the ORM directly: they call these through
`database_sync_to_async`, the way Channels' docs and production Channels apps do.
"""

from __future__ import annotations

import io
import logging
import wave

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from assessments.audio import BYTES_PER_SAMPLE, CHANNELS, SAMPLE_RATE
from assessments.grading import GradeInput, GradeResult
from assessments.models import Assessment, Probe, TutorSession, Turn
from assessments.placement import EARLY_END_REASONS, Placement

logger = logging.getLogger(__name__)


def start_session(learner_id: int, *, upstream: str, model: str, target_language: str) -> int:
    return TutorSession.objects.create(
        learner_id=learner_id, upstream=upstream, model=model, target_language=target_language
    ).pk


def set_upstream_session_id(session_id: int, upstream_session_id: str) -> None:
    TutorSession.objects.filter(pk=session_id).update(upstream_session_id=upstream_session_id[:64])


def end_session(session_id: int, reason: str) -> None:
    """Record the end once; a later call (disconnect after an orderly end) keeps the first reason."""
    TutorSession.objects.filter(pk=session_id, ended_at__isnull=True).update(
        ended_at=timezone.now(), end_reason=reason
    )


def record_turn(session_id: int, role: str, text: str, item_id: str, level: str) -> None:
    Turn.objects.create(session_id=session_id, role=role, text=text, item_id=item_id[:64], level=level)


def save_turn_audio(turn_id: int, pcm: bytes) -> str | None:
    """Keep a learner's spoken answer (PCM16 mono 24 kHz) as a WAV file of its turn, for the teacher.

    Returns the stored file's name, or None when recording is off (PARLA_RECORD_AUDIO) or there is
    no audio. The file goes through Django's storage API (STORAGES["default"]).
    """
    if not settings.PARLA_RECORD_AUDIO or not pcm:
        return None
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(CHANNELS)
        wav.setsampwidth(BYTES_PER_SAMPLE)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm)
    turn = Turn.objects.get(pk=turn_id)
    if turn.audio:
        turn.audio.delete(save=False)  # a second take replaces the first, never leaves an orphan
    turn.audio.save(f"turn-{turn_id}.wav", ContentFile(buffer.getvalue()), save=False)
    Turn.objects.filter(pk=turn_id).update(audio=turn.audio.name)
    logger.info("turn audio saved", extra={"turn_id": turn_id, "session_id": turn.session_id, "bytes": len(pcm)})
    return turn.audio.name


def record_probe(session_id: int, level: str, outcome: str, evidence: str, call_id: str) -> None:
    Probe.objects.create(session_id=session_id, level=level, outcome=outcome, evidence=evidence, call_id=call_id[:64])


def create_assessment(session_id: int, level: str, partial: bool) -> int:
    """Persist the placement result (status pending) before anything else can fail."""
    with transaction.atomic():
        session = TutorSession.objects.select_for_update().get(pk=session_id)
        assessment, _ = Assessment.objects.get_or_create(
            session=session, defaults={"learner_id": session.learner_id, "level": level, "partial": partial}
        )
    return assessment.pk


def save_grade(assessment_id: int, result: GradeResult) -> None:
    Assessment.objects.filter(pk=assessment_id).update(
        level=result.level,
        criteria=result.criteria,
        summary=result.summary,
        grader=result.grader[:32],
        status=Assessment.Status.GRADED,
        graded_at=timezone.now(),
    )


def mark_delivered(assessment_id: int, notes: str) -> None:
    Assessment.objects.filter(pk=assessment_id).update(
        status=Assessment.Status.DELIVERED, delivered_at=timezone.now(), failure_reason=notes
    )


def mark_delivery_failed(assessment_id: int, reason: str) -> None:
    Assessment.objects.filter(pk=assessment_id).exclude(status=Assessment.Status.DELIVERED).update(
        status=Assessment.Status.DELIVERY_FAILED, failed_at=timezone.now(), failure_reason=reason
    )



def keep_undelivered(assessment_id: int, fallback: GradeResult, reason: str) -> bool:
    """The learner left before the summary was delivered: keep the assessment, graded.

    A pending assessment gets the rules grade; anything not delivered is marked delivery_failed
    with `reason`. Returns False when it had been delivered already (nothing to do).
    """
    with transaction.atomic():
        assessment = Assessment.objects.select_for_update().get(pk=assessment_id)
        if assessment.status == Assessment.Status.DELIVERED:
            return False
        if assessment.status == Assessment.Status.PENDING:
            save_grade(assessment_id, fallback)
        mark_delivery_failed(assessment_id, reason)
    return True


def grade_input_from_db(assessment: Assessment) -> GradeInput:
    """Rebuild what the grader needs from the stored session: its probes replayed through placement."""
    session = assessment.session
    placement = Placement()
    for probe in session.probes.all():
        if not placement.finished:
            placement.record(probe.level, probe.outcome, probe.evidence)
    if not placement.finished:
        placement.finish_early(session.end_reason if session.end_reason in EARLY_END_REASONS else "learner_left")
    turns = list(session.turns.values_list("role", "text"))
    return GradeInput.from_placement(
        placement,
        target_language=session.target_language,
        native_language=assessment.learner.native_language,
        learner_turns=[text for role, text in turns if role == Turn.Role.LEARNER],
        tutor_turns=[text for role, text in turns if role == Turn.Role.TUTOR],
    )
