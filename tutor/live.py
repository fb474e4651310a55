"""The teachers' live view: every running tutor session announces a snapshot on the channel layer.

The runtime announces on each state or level change (`announce_session`); `TeacherLiveConsumer` relays the snapshots to
teachers' browsers. Only small JSON goes over the layer (never audio). With REDIS_URL this works
across server processes. A channel layer failure is logged and never disturbs the learner's session.

With the in-memory layer (one process, no REDIS_URL) a snapshot nobody watches is not built: the
teachers' group lives in this process, so an empty group is known for free, and every running
session announces several times a turn (about 40 us each here, `for_teachers` most of it; issue 14).
Across processes (Redis) the group's members are elsewhere, so every snapshot is sent.
"""

from __future__ import annotations

import logging

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.urls import reverse
from django.utils import timezone

from assessments.languages import language_name
from assessments.placement import Placement

logger = logging.getLogger(__name__)

TEACHERS_GROUP = "teachers-live"


def session_snapshot(
    *,
    session_id: int,
    learner: str,
    language: str,
    state: str,
    placement: Placement,
    assessment_id: int | None,
    assessment_level: str | None = None,
    assessment_status: str = "pending",
) -> dict:
    """What a teacher sees of one running session (README: `/ws/teacher/live/`)."""
    return {
        "session_id": session_id,
        "learner": learner,
        "language": language,
        "state": str(state),
        "level": placement.current_level,
        "ladder": placement.ladder(),
        "probes": len(placement.probes),
        "assessment": None
        if assessment_id is None
        else {
            "id": assessment_id,
            "level": None if assessment_status == "not_rated" else assessment_level or placement.rating,
            "status": assessment_status,
            "partial": placement.partial,
        },
    }


async def announce_session(session) -> None:
    """A snapshot of a running session (a TutorSessionRuntime) for the teachers, built only if one may
    reach a teacher: the runtime calls this on each state or level change."""
    if session.session_id is None or not watching():
        return
    outcome = session.outcome
    await announce(
        session_snapshot(
            session_id=session.session_id,
            learner=session.learner_name,
            language=session.config.target_language,
            state=session.state,
            placement=session.placement,
            assessment_id=session.assessment_id,
            assessment_level=outcome.delivered.result.level if outcome.delivered else None,
            assessment_status=outcome.status,
        )
    )


async def announce(snapshot: dict) -> None:
    """Send one session snapshot to every connected teacher (best effort)."""
    layer = get_channel_layer()
    if layer is None or not watched(layer):
        return
    try:
        await layer.group_send(TEACHERS_GROUP, {"type": "live.session", "session": for_teachers(snapshot)})
    except Exception as exc:  # the live view is a convenience; the learner's session goes on
        logger.warning("live view announce failed", extra={"session_id": snapshot.get("session_id"), "error": str(exc)})


def watching() -> bool:
    """Whether a snapshot now may reach a teacher (the runtime asks before it builds one)."""
    layer = get_channel_layer()
    return layer is not None and watched(layer)


def watched(layer) -> bool:
    """False only when no teacher can be watching: an in-memory layer whose teachers' group is empty."""
    return not isinstance(layer, InMemoryChannelLayer) or bool(layer.groups.get(TEACHERS_GROUP))


def for_teachers(snapshot: dict) -> dict:
    """The snapshot as the live view shows it: the language's name, the session's and the assessment's
    admin pages, the time."""
    assessment = snapshot.get("assessment")
    if assessment and assessment.get("id") is not None:
        assessment = {**assessment, "url": reverse("admin:assessments_assessment_change", args=[assessment["id"]])}
    return {
        **snapshot,
        "session_url": reverse("admin:assessments_tutorsession_change", args=[snapshot["session_id"]]),
        "language_name": language_name(snapshot["language"]),
        "assessment": assessment,
        "at": timezone.now().isoformat(),
    }


def can_watch(user) -> bool:
    """Teachers (staff with the view permission on assessments) may watch live sessions."""
    return bool(user and user.is_authenticated and user.is_staff and user.has_perm("assessments.view_assessment"))
