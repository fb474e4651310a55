"""Resumption: a placement outlives its connection and its process (DESIGN section 3b, issue 26).

    detach   the learner's socket dropped mid-placement (not a Stop), or the process drains: the answer
             in progress is judged and stored, the tutor's upstream session closed, every task of the
             session cancelled and awaited (TutorSessionRuntime.close), and the session marked
             detached (assessments.reconnection): it awaits its learner for PARLA_RESUME_SECONDS
    take     the page reconnected (through the proxy, on any process) and sent `session.resume`: the
             same learner's session, detached and within the window, is claimed for this process; one
             still served by a connection the server has not seen drop is detached there first
    restore  a new runtime is built from what is stored alone (turns, probes replayed through the
             placement: the ladder as it was), the page is sent the conversation so far, and the
             tutor's new upstream session is given it as text (TutorConnection.replay, as after the
             60-minute expiry); the tutor's question stands, or its reply is asked for again
    show     a session whose handover the drop cut short: its assessment (kept by the rules) is shown
             as text, with the conversation

Nothing is made up: the rebuilt transcript holds only the stored turns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from assessments import reconnection, services
from assessments.models import Assessment
from assessments.placement import Placement
from assessments.transcript import LEARNER, TUTOR, Transcript
from tutor import metrics
from tutor.realtime import wire
from tutor.realtime.relay import LearnerPort
from tutor.realtime.wire import ClientError, State
from tutor.runtime.config import SessionConfig
from tutor.runtime.phase import Phase

if TYPE_CHECKING:
    from tutor.runtime.session import TutorSessionRuntime

logger = logging.getLogger(__name__)
db = database_sync_to_async

DETACH_WAIT_SECONDS = 20.0  # a session still served elsewhere: its connection detaches it (its answer judged)


def learner_group(learner_id: int) -> str:
    """The channel-layer group of a learner's connections (Start elsewhere, resume elsewhere)."""
    return f"learner-{learner_id}"


@dataclass(frozen=True)
class StoredSession:
    """A detached session as stored: what a runtime on a new connection is rebuilt from."""

    session_id: int
    placement: Placement
    transcript: Transcript
    started_at: datetime
    self_assessment: str


def enabled() -> bool:
    return settings.PARLA_RESUME_SECONDS > 0


# --- the connection that dropped --------------------------------------------------------------------


async def settle(runtime: TutorSessionRuntime) -> bool:
    """Before detaching: the answer in progress is judged and stored (its words are in the conversation
    the tutor will be given again). True when the placement is still open, so it may await its learner;
    False (ended as before) when it had not begun, or ended with that judgement."""
    if not enabled() or runtime.phase.now is not Phase.CONVERSING or runtime.session_id is None:
        return False
    await runtime.judge.close(then_assess=False)
    await runtime.judge.settled()
    return runtime.phase.now is Phase.CONVERSING and not runtime.placement.finished


async def _detach(runtime: TutorSessionRuntime) -> None:
    """The session's tasks and upstream are closed: mark it detached, and tell the learner's other
    connections (one may be waiting to resume it)."""
    await db(reconnection.detach)(runtime.session_id, services.process_id())
    metrics.reconnection("detached")
    runtime.log.info("session detached: awaiting the learner", extra={
        "level": runtime.placement.current_level, "rated_answers": runtime.placement.rated_answers,
        "resume_seconds": settings.PARLA_RESUME_SECONDS})
    await _tell_detached(runtime.learner_id, runtime.session_id)


async def leave(runtime: TutorSessionRuntime, was: Phase, reason: str, *, detach: bool, detached: bool) -> None:
    """What a closed connection leaves of its session (`was`: the phase it was in): an open placement
    `detached` (settle said so) awaits its learner; otherwise it ends as before, an assessment not
    delivered kept by the rules, and if the socket dropped (`detach`) before the session ended (during
    the handover, or as the answer judged at the drop ended the placement), that assessment is shown
    as text on reconnecting."""
    if detached:
        await _detach(runtime)
        return
    await runtime.outcome.keep_undelivered(was, reason)
    await db(services.end_session)(runtime.session_id, reason)
    if detach and enabled() and not was.over and runtime.assessment_id is not None:
        await db(reconnection.detach_ended)(runtime.session_id)
        await _tell_detached(runtime.learner_id, runtime.session_id)


async def _tell_detached(learner_id: int, session_id: int) -> None:
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(learner_group(learner_id), {"type": "session.detached", "session_id": session_id})


# --- the new connection -------------------------------------------------------------------------------


class DetachWaits:
    """A connection's waits for a session to be detached by the connection that served it."""

    def __init__(self) -> None:
        self.waiting: dict[int, asyncio.Event] = {}
        self.claimed: set[int] = set()  # sessions a claim of this connection took for this process

    def detached(self, session_id: int) -> None:
        if session_id in self.waiting:
            self.waiting[session_id].set()

    async def take(self, learner_id: int, session_id: int, origin: str) -> reconnection.Claim:
        """Claim the session for this process; one still served by another connection (one the server
        has not seen drop, or one still detaching) is asked to let go, and claimed once it did."""
        detached = self.waiting[session_id] = asyncio.Event()  # before the claim: its news cannot be missed
        try:
            claim = await self._claim(session_id, learner_id)
            if claim.outcome != reconnection.ATTACHED:
                return claim
            layer = get_channel_layer()
            await layer.group_send(learner_group(learner_id), {"type": "session.reclaim", "session_id": session_id,
                                                               "origin": origin})
            try:
                async with asyncio.timeout(DETACH_WAIT_SECONDS):
                    await detached.wait()
            except TimeoutError:
                pass  # claimed below all the same if it was detached without word (another process died)
            claim = await self._claim(session_id, learner_id)
            return claim if claim.outcome != reconnection.ATTACHED else reconnection.Claim("resume_unknown")
        finally:
            del self.waiting[session_id]

    async def _claim(self, session_id: int, learner_id: int) -> reconnection.Claim:
        """One claim; what it took is recorded even when this connection is cancelled meanwhile (the
        claim runs on in the database thread: its result is awaited before the cancellation goes on)."""
        call = asyncio.ensure_future(db(reconnection.claim)(session_id, learner_id, services.process_id()))
        try:
            claim = await asyncio.shield(call)
        except asyncio.CancelledError:
            self._took(session_id, await call)
            raise
        self._took(session_id, claim)
        return claim

    def _took(self, session_id: int, claim: reconnection.Claim) -> None:
        if claim.outcome == reconnection.RESUMED:
            self.claimed.add(session_id)


async def let_go(session_id: int) -> None:
    """A resume that claimed the session (DetachWaits.claimed) and stopped before a runtime served it
    (its socket closed, or it failed): the session is detached again, for the learner's next
    reconnection or, past the window, the recovery sweep. Claimed and served by nobody, it would stay
    open for as long as this process lives (its lease says it serves it). Only the connection whose
    claim took it calls this: the process id alone does not tell it from another connection here."""
    try:
        detached = await db(reconnection.detach)(session_id, services.process_id())
    except Exception:  # the database is gone too: the sweep ends it once this process's lease lapses
        logger.exception("resume stopped: session not detached again", extra={"session_id": session_id})
        return
    if detached:
        metrics.reconnection("detached")
        logger.info("resume stopped: session detached again", extra={"session_id": session_id})


def refusal(claim: reconnection.Claim) -> ClientError:
    return ClientError(claim.outcome, reconnection.REFUSED[claim.outcome])


async def load(session_id: int, config: SessionConfig) -> tuple[StoredSession, SessionConfig]:
    """The stored session, and its configuration for the time it has left under the time cap."""
    session, placement, transcript = await db(reconnection.stored_session)(session_id)
    stored = StoredSession(session_id, placement, transcript, session.started_at, session.self_assessment)
    elapsed = (timezone.now() - session.started_at).total_seconds()
    config = dataclasses.replace(
        config, self_assessment=session.self_assessment, max_seconds=max(1.0, config.max_seconds - elapsed)
    )
    return stored, config


def session_row(runtime: TutorSessionRuntime, upstream) -> asyncio.Future:
    """The session row's id: a new row for a new session (this process serves it), a resumed one's own."""
    if runtime.stored is not None:
        done = asyncio.get_running_loop().create_future()
        done.set_result(runtime.stored.session_id)
        return done
    return asyncio.ensure_future(db(services.start_session)(
        runtime.learner_id, upstream=upstream.kind, model=upstream.model, start_level=runtime.placement.current_level,
        target_language=runtime.config.target_language, self_assessment=runtime.config.self_assessment,
    ))


async def restore(runtime: TutorSessionRuntime) -> None:
    """The page is told which session this is; on a resume it is shown the conversation so far and the
    ladder, and the runtime's parts take up where the stored conversation ends."""
    stored = runtime.stored
    await runtime.learner.send_event(wire.session(runtime.session_id, resumed=stored is not None))
    if stored is None:
        return
    metrics.reconnection("resumed")
    await show_conversation(runtime.learner, stored.transcript)
    conversation = stored.transcript.conversation
    asked = [u for u in conversation if u.role == TUTOR]
    if asked:  # the next answer replies to the tutor's last question
        runtime.answers.tutor_asked(asked[-1].level or runtime.placement.current_level, asked[-1].text)
    # The tutor's question stands (the learner's turn), or its reply to the last answer is asked for again.
    runtime.responses.reply_complete = bool(conversation) and conversation[-1].role == TUTOR
    runtime.log.info("session resumed", extra={"turns": len(stored.transcript.utterances),
                                               "level": runtime.placement.current_level,
                                               "rated_answers": runtime.placement.rated_answers})


async def show_conversation(learner: LearnerPort, transcript: Transcript) -> None:
    for u in transcript.utterances:
        spoken_ms = (u.fluency or {}).get("duration_ms") if u.role == LEARNER and not u.text else None
        await learner.send_event(wire.transcript(u.role, u.item_id, u.text, final=True, mode=u.mode, spoken_ms=spoken_ms))


async def show_assessment(learner: LearnerPort, session_id: int, assessment_id: int) -> None:
    """A handover the drop cut short: the conversation and the assessment, as text; the session has ended."""
    _session, placement, transcript = await db(reconnection.stored_session)(session_id)
    row = await db(Assessment.objects.get)(pk=assessment_id)
    await learner.send_event(wire.session(session_id, resumed=True))
    await show_conversation(learner, transcript)
    await learner.send_event(wire.level(placement.current_level, placement.ladder()))
    await learner.send_event(wire.assessment(
        row.pk, row.level or None, row.criteria, row.summary, row.grader, row.status, row.partial))
    await learner.send_event(wire.state(State.ENDED))
    logger.info("assessment shown on reconnecting", extra={"session_id": session_id, "assessment_id": assessment_id})
