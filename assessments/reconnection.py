"""A placement outlives its connection: the stored side of detaching a session and resuming it.

When a learner's socket drops mid-placement (or their process drains for a deploy), the process that
served the session stores everything, closes its upstream session and marks the session detached
(`detach`): nobody serves it, and it awaits the learner for PARLA_RESUME_SECONDS. The learner's page
reconnects, through the proxy to any process, and asks for it back (`claim`): only its own learner may,
within the window, and only one process at a time (one conditional UPDATE names the new server, whose
lease then says it is alive: assessments.leases). A session still served by a live process is not
taken from it (`ATTACHED`: the caller waits for that process to detach it). A session whose process
died (its lease is gone) is taken over like a detached one.

Past the window, the recovery sweep ends it as leaving ends a placement today (`end_expired`):
`learner_left`, its assessment from the judgements stored as they were made ("at least" the floor, or
not rated). A session whose handover the drop cut short has its assessment kept by the rules and
marked detached too: on reconnecting the learner is shown it as text (`DELIVER`).

Plain synchronous functions, called through `database_sync_to_async`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from assessments import leases, services
from assessments.models import Assessment, TutorSession

logger = logging.getLogger(__name__)

RESUMED, DELIVER, ATTACHED = "resumed", "deliver", "attached"
# Refusals, each with the message the learner reads (no refusal says whose session it was).
REFUSED = {
    "resume_unknown": "That session cannot be continued here. Press Start to begin a new one.",
    "resume_ended": "That session has already ended; what it found is in your history. Press Start to begin a new one.",
    "resume_expired": "That session waited too long for you to come back and has ended. Press Start to begin a new one.",
}
LEFT_REASON = "the learner's connection dropped and they did not come back"
DELIVERED_NOTE = "shown as text when the learner reconnected (the connection dropped during the handover)"


@dataclass(frozen=True)
class Claim:
    outcome: str  # RESUMED | DELIVER | ATTACHED | one of REFUSED
    assessment_id: int | None = None  # DELIVER: the assessment to show

    @property
    def refused(self) -> bool:
        return self.outcome in REFUSED


def window_start(now: datetime | None = None) -> datetime:
    """Sessions detached before this have waited PARLA_RESUME_SECONDS: no longer resumable."""
    return (now or timezone.now()) - timedelta(seconds=settings.PARLA_RESUME_SECONDS)


def detach(session_id: int, claimer: str) -> bool:
    """The session's socket is gone mid-placement: nobody serves it until its learner comes back.
    Only the process serving it detaches it (a stale one never undoes another's claim)."""
    return bool(
        TutorSession.objects.filter(pk=session_id, ended_at__isnull=True, served_by=claimer)
        .update(detached_at=timezone.now(), served_by="")
    )


def detach_ended(session_id: int) -> None:
    """The handover was cut short: its assessment (kept by the rules) is shown on reconnecting."""
    TutorSession.objects.filter(pk=session_id).update(detached_at=timezone.now())


def claim(session_id: int, learner_id: int, claimer: str) -> Claim:
    """Take session `session_id` back for its learner, served by `claimer` from now on."""
    leases.hold()  # before the row names this process: its death is then seen at once
    session = TutorSession.objects.filter(pk=session_id, learner_id=learner_id).first()
    if session is None:
        return Claim("resume_unknown")  # also another learner's: nothing says whose it was
    since = window_start()
    if session.ended_at is not None:
        return _deliver(session, since)
    if session.detached_at is None:
        if session.served_by and session.served_by not in leases.dead([session.served_by]):
            return Claim(ATTACHED)  # still served: its process detaches it as its socket closes
        if not session.served_by:
            return Claim("resume_unknown")
    elif session.detached_at < since:
        return Claim("resume_expired")
    # One conditional UPDATE: of two processes claiming at once, PostgreSQL gives it to one.
    taken = TutorSession.objects.filter(
        pk=session_id, ended_at__isnull=True, detached_at=session.detached_at, served_by=session.served_by
    ).update(detached_at=None, served_by=claimer, heartbeat_at=timezone.now())
    return Claim(RESUMED) if taken else Claim(ATTACHED)


def _deliver(session: TutorSession, since: datetime) -> Claim:
    """An ended session: its assessment is shown once more if the drop cut its handover short."""
    assessment = Assessment.objects.filter(session=session).first()
    if session.detached_at is None or session.detached_at < since or assessment is None:
        return Claim("resume_ended")
    with transaction.atomic():
        updated = TutorSession.objects.filter(pk=session.pk, detached_at=session.detached_at).update(detached_at=None)
        if updated and assessment.status in (Assessment.Status.GRADED, Assessment.Status.DELIVERY_FAILED):
            services.mark_delivered(assessment.pk, DELIVERED_NOTE)
    return Claim(DELIVER, assessment.pk) if updated else Claim("resume_ended")


def stored_session(session_id: int):
    """What a resumed session is rebuilt from: its row, and its placement and transcript as stored."""
    session = TutorSession.objects.select_related("learner").get(pk=session_id)
    placement, transcript = services.stored_conversation(session)
    return session, placement, transcript


def expired_sessions() -> list[int]:
    return list(
        TutorSession.objects.filter(ended_at__isnull=True, detached_at__lt=window_start()).values_list("pk", flat=True)
    )


def end_expired(session_id: int) -> tuple[int | None, bool]:
    """End a detached session its learner did not come back to (each by one sweep only), with the
    assessment its stored judgements give. Returns (assessment id or None if another sweep had it, rated)."""
    with transaction.atomic():
        ended = TutorSession.objects.filter(
            pk=session_id, ended_at__isnull=True, detached_at__lt=window_start()
        ).update(ended_at=timezone.now(), end_reason=TutorSession.EndReason.LEARNER_LEFT, detached_at=None)
        if not ended:
            return None, False
        return services.keep_stored_placement(session_id, TutorSession.EndReason.LEARNER_LEFT, LEFT_REASON)
