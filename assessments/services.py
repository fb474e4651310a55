"""Database work of a tutor session, as plain synchronous functions (wrapped for async callers).

The consumer and the session runtime never touch the ORM directly: they call these through
`database_sync_to_async`, the way Channels' docs and production Channels apps do.
"""

from __future__ import annotations

import io
import logging
import wave
from collections.abc import Collection
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from assessments import leases
from assessments.audio import BYTES_PER_SAMPLE, CHANNELS, SAMPLE_RATE
from assessments.grading import GradeInput, GradeResult
from assessments.grading.summary import NOT_RATED_SUMMARY
from assessments.models import Assessment, Probe, TutorSession, Turn
from assessments.placement import EARLY_END_REASONS, Placement
from assessments.transcript import Transcript, Utterance

logger = logging.getLogger(__name__)


process_id = leases.process_id  # who runs sessions and claims work: this process


def stale_before() -> datetime:
    """Heartbeats and claims older than this belong to a process that died."""
    return timezone.now() - timedelta(seconds=settings.PARLA_STALE_SECONDS)


def start_session(
    learner_id: int, *, upstream: str, model: str, target_language: str, self_assessment: str = "",
    start_level: str = "A1",
) -> int:
    leases.hold()  # before the row names this process: its death is then seen at once
    return TutorSession.objects.create(
        learner_id=learner_id,
        upstream=upstream,
        model=model,
        target_language=target_language,
        self_assessment=self_assessment,
        start_level=start_level,
        heartbeat_at=timezone.now(),
        served_by=process_id(),
    ).pk


def heartbeat(session_ids: Collection[int], claimer: str) -> None:
    """The sessions' process is alive: its sessions, and the grading claims it holds on them, stay its
    own. Two UPDATEs for all of a process's sessions, however many it runs."""
    now = timezone.now()
    TutorSession.objects.filter(pk__in=session_ids).update(heartbeat_at=now)
    Assessment.objects.filter(
        session_id__in=session_ids, status=Assessment.Status.PENDING, claimed_by=claimer
    ).update(claimed_at=now)


def has_running_session(learner_id: int) -> bool:
    """A session of the learner is running (not ended, its process alive): in another window, say."""
    return TutorSession.objects.filter(
        learner_id=learner_id, ended_at__isnull=True, heartbeat_at__gte=stale_before()
    ).exists()


def set_upstream_session_id(session_id: int, upstream_session_id: str) -> None:
    TutorSession.objects.filter(pk=session_id).update(upstream_session_id=upstream_session_id[:64])


def end_session(session_id: int, reason: str) -> None:
    """Record the end once; a later call (disconnect after an orderly end) keeps the first reason."""
    TutorSession.objects.filter(pk=session_id, ended_at__isnull=True).update(
        ended_at=timezone.now(), end_reason=reason
    )


def record_turn(
    session_id: int, role: str, text: str, item_id: str, level: str, mode: str = "", fluency: dict | None = None
) -> int:
    return Turn.objects.create(
        session_id=session_id, role=role, text=text, item_id=item_id[:64], level=level, mode=mode,
        fluency=fluency or {},
    ).pk


def update_answer(turn_id: int, text: str, mode: str, fluency: dict) -> None:
    """A learner answer grew by a fragment, or was measured when it ended."""
    Turn.objects.filter(pk=turn_id).update(text=text, mode=mode, fluency=fluency)


def save_turn_audio(turn_id: int, pcm: bytes, **fields) -> str | None:
    """Keep a learner's spoken answer (PCM16 mono 24 kHz) as a WAV file of its turn, for the teacher.

    Returns the stored file's name, or None when recording is off (PARLA_RECORD_AUDIO) or there is
    no audio. The file goes through Django's storage API (STORAGES["default"]). `fields`: other
    columns of the turn, written in the same UPDATE (an answer's final text and fluency).
    """
    if not settings.PARLA_RECORD_AUDIO or not pcm:
        if fields:
            Turn.objects.filter(pk=turn_id).update(**fields)
        return None
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(CHANNELS)
        wav.setsampwidth(BYTES_PER_SAMPLE)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm)
    turn = Turn.objects.only("audio", "session_id").get(pk=turn_id)
    if turn.audio:
        turn.audio.delete(save=False)  # a second take replaces the first, never leaves an orphan
    turn.audio.save(f"turn-{turn_id}.wav", ContentFile(buffer.getvalue()), save=False)
    Turn.objects.filter(pk=turn_id).update(audio=turn.audio.name, **fields)
    logger.info("turn audio saved", extra={"turn_id": turn_id, "session_id": turn.session_id, "bytes": len(pcm)})
    return turn.audio.name


def record_judgement(session_id: int, turn_id: int | None, judgement, opinion=None) -> int:
    """Store the rater's judgement of one answer, with the tutor's `record_probe` opinion beside it."""
    tutor = {}
    if opinion is not None:
        tutor = {
            "call_id": opinion.call_id[:64],
            "tutor_level": opinion.level,
            "tutor_outcome": opinion.outcome,
            "tutor_evidence": opinion.evidence,
            "disagreement": (opinion.level, opinion.outcome) != (judgement.level, judgement.outcome),
        }
    return Probe.objects.create(
        session_id=session_id,
        turn_id=turn_id,
        level=judgement.level,
        outcome=judgement.outcome,
        evidence=judgement.evidence,
        rater=judgement.rater[:64],
        mode=judgement.mode,
        measures=judgement.measures,
        **tutor,
    ).pk


def store_judged_answer(
    session_id: int, turn_id: int | None, judgement, opinion=None, *, new_turn: dict | None = None,
    final: dict | None = None, audio: bytes = b"",
) -> int | None:
    """An answer once judged, in one call (one hop to the database thread, not three): its Turn row
    created (`new_turn`: record_turn's fields) or given its final text and fluency (`final`:
    update_answer's), its recording kept, and the judgement stored beside the tutor's opinion.
    Returns the answer's turn id."""
    if new_turn is not None:
        turn_id = record_turn(session_id, **new_turn)
    if turn_id is not None and (audio or final):
        save_turn_audio(turn_id, audio, **(final or {}))  # one UPDATE for the recording and the final text
    record_judgement(session_id, turn_id, judgement, opinion)
    return turn_id


def create_assessment(session_id: int, level: str, partial: bool, *, claim: bool = True) -> int:
    """Persist the placement result (status pending) before anything else can fail.

    This process claims it at once (`claim`): the live handover grades it, nobody else.
    """
    if not claim:
        return _create(session_id, {"level": level, "partial": partial})
    leases.hold()
    return _create(session_id, {
        "level": level, "partial": partial, "claimed_by": process_id(), "claimed_at": timezone.now(),
    })


def create_unrated_assessment(
    session_id: int, partial: bool, reason: str = "", summary: str = NOT_RATED_SUMMARY
) -> int:
    """The session gave too little evidence for a level: an assessment `not_rated`, with no level and
    the learner's explanation as its summary (nothing to grade, nothing to claim); `reason`, when the
    session did not end by itself (a server restart), says why for the teacher; `summary`, what the
    learner reads (grading.summary.not_rated_summary)."""
    return _create(session_id, {
        "level": "", "partial": partial, "status": Assessment.Status.NOT_RATED, "summary": summary,
        "failure_reason": reason,
    })


def _create(session_id: int, fields: dict) -> int:
    with transaction.atomic():
        session = TutorSession.objects.select_for_update().get(pk=session_id)
        assessment, _ = Assessment.objects.get_or_create(
            session=session, defaults={"learner_id": session.learner_id, **fields}
        )
    return assessment.pk


def _unclaimed(assessment_id: int) -> Q:
    """Nobody holds the assessment: no claim, a claim not renewed for PARLA_STALE_SECONDS, or the claim
    of a process that holds no lease (it died: assessments.leases)."""
    holder = Assessment.objects.filter(pk=assessment_id).values_list("claimed_by", flat=True).first()
    return (
        Q(claimed_by="") | Q(claimed_at__isnull=True) | Q(claimed_at__lt=stale_before())
        | Q(claimed_by__in=leases.dead([holder or ""]))
    )


def claim(assessment_id: int, claimer: str) -> bool:
    """Claim a pending assessment for grading: True for exactly one caller while the claim holds.

    One conditional UPDATE: PostgreSQL re-checks the condition on the locked row, so of two
    concurrent claims the second finds it taken. The claim of a process that died is taken over at
    once (its lease is gone); where leases cannot be seen, once not renewed (by `heartbeat`) for
    PARLA_STALE_SECONDS.
    """
    leases.hold()  # the claim dies with this process
    return bool(
        Assessment.objects.filter(pk=assessment_id, status=Assessment.Status.PENDING)
        .filter(_unclaimed(assessment_id))
        .update(claimed_by=claimer, claimed_at=timezone.now())
    )


def save_grade(assessment_id: int, result: GradeResult, claimer: str | None = None) -> bool:
    """Store the grade of a pending assessment under `claimer`'s claim (default: this process).

    Refused (False) when it is no longer pending or another process holds a fresh claim: an
    assessment is graded once.
    """
    return bool(
        Assessment.objects.filter(pk=assessment_id, status=Assessment.Status.PENDING)
        .filter(Q(claimed_by=claimer or process_id()) | _unclaimed(assessment_id))
        .update(
            level=result.level,
            criteria=result.criteria,
            summary=result.summary,
            grader=result.grader[:32],
            grader_level=result.grader_level or "",
            grader_flag=result.flag,
            status=Assessment.Status.GRADED,
            graded_at=timezone.now(),
        )
    )


def mark_delivered(assessment_id: int, notes: str) -> None:
    Assessment.objects.filter(pk=assessment_id).update(
        status=Assessment.Status.DELIVERED, delivered_at=timezone.now(), failure_reason=notes
    )


def mark_delivery_failed(assessment_id: int, reason: str) -> bool:
    """A graded assessment could not be spoken. The first failure's reason is the one kept: a later
    "learner disconnected" does not hide what went wrong. False if it was not graded-and-undelivered."""
    return bool(
        Assessment.objects.filter(pk=assessment_id, status=Assessment.Status.GRADED).update(
            status=Assessment.Status.DELIVERY_FAILED, failed_at=timezone.now(), failure_reason=reason
        )
    )


def keep_undelivered(assessment_id: int, fallback: GradeResult, reason: str) -> bool:
    """The learner left before the summary was delivered: keep the assessment, graded.

    A pending assessment gets the rules grade (under this process's claim); a graded one is marked
    delivery_failed with `reason`. Returns False when there was nothing to do: delivered, failed
    already (its first reason stays), or graded by another process that holds the claim.
    """
    with transaction.atomic():
        assessment = Assessment.objects.select_for_update().get(pk=assessment_id)
        if assessment.status == Assessment.Status.PENDING:
            save_grade(assessment_id, fallback)
        return mark_delivery_failed(assessment_id, reason)


def grade_input_from_db(assessment: Assessment) -> GradeInput:
    """Rebuild what the grader needs from the stored session: its probes replayed through placement,
    its turns as the transcript (the same path as the live session's)."""
    session = assessment.session
    placement, transcript = stored_conversation(session)
    if not placement.finished:
        placement.finish_early(session.end_reason if session.end_reason in EARLY_END_REASONS else "learner_left")
    return transcript.grade_input(
        placement, target_language=session.target_language, native_language=assessment.learner.native_language,
        feedback_language=feedback_language(assessment.learner),
    )


def stored_conversation(session: TutorSession) -> tuple[Placement, Transcript]:
    """The placement and the transcript of a stored session, rebuilt from its rows alone: its turns,
    and its judgements replayed through placement in the order they happened, each beside its answer
    as it was live (grading after a restart, and a placement resumed on a new connection)."""
    placement = Placement(session.start_level)
    transcript = Transcript()
    turns = [(t.created_at, 0, t.pk, t) for t in session.turns.all()]
    probes = [(p.created_at, 1, p.pk, p) for p in session.probes.all()]
    for _at, kind, _pk, row in sorted(turns + probes, key=lambda x: x[:3]):
        if kind == 0:
            transcript.utterances.append(
                Utterance(row.role, row.text, row.item_id or f"turn-{row.pk}", row.level, row.mode, row.fluency or {})
            )
        elif not placement.finished:
            placement.record(row.level, row.outcome, row.evidence, row.rater)
            transcript.judge(placement.probes[-1])
    return placement, transcript


def stored_placement(session: TutorSession, end_reason: str) -> Placement:
    """The placement of a stored session: its judgements replayed in order, ended early with
    `end_reason` if they did not finish it (what a session interrupted by a crash had reached)."""
    placement = Placement(session.start_level)
    for probe in session.probes.order_by("created_at", "pk"):
        if placement.finished:
            break
        placement.record(probe.level, probe.outcome, probe.evidence, probe.rater)
    placement.finish_early(end_reason)
    return placement


def keep_stored_placement(session_id: int, end_reason: str, why: str) -> tuple[int, bool]:
    """The assessment of a placement cut short with nobody serving it (its process died; its learner
    did not come back), from the judgements stored as they were made: `partial` ("at least" the floor)
    and pending, for the sweep to grade; or not_rated, with `why` and the count, when too few answers
    were rated. Returns (assessment id, rated)."""
    placement = stored_placement(TutorSession.objects.get(pk=session_id), end_reason)
    minimum = settings.PARLA_MIN_RATED_ANSWERS
    if placement.has_evidence(minimum):
        return create_assessment(session_id, placement.rating, placement.partial, claim=False), True
    reason = f"{why}: {placement.rated_answers} rated answer(s), at least {minimum} needed for a level"
    return create_unrated_assessment(session_id, placement.partial, reason), False


def feedback_language(learner) -> str:
    """The language of the learner's feedback: English, or their native language if they asked for it."""
    return learner.native_language if learner.feedback_in_native_language else "en"
