"""SessionOutcome: how a session ends and what it leaves: assessed, partial, not rated, kept undelivered.

    begin        the placement is over: once the answers already given are judged, an assessment with
                 enough evidence is created (status pending) and handed to the delivery worker; one
                 without is stored not rated, and the session ends
    not rated    too little evidence for a level: stored `not_rated`, the learner told, never a default
    end          the session row ended, the heartbeat left, the learner shown `ended`, the tutor's and a
                 prepared narrator's upstream sessions closed
    keep         on disconnect: an assessment not delivered is graded by the rules and kept

and what ends a placement early: the learner's Stop, the time cap (on the session clock,
tutor.realtime.clock), the upstream lost or failing.

The assessment row and the phase move together here: ASSESSING from the moment the row is being
created, so nothing else (the tutor, the judge, a second ending) starts meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine

from channels.db import database_sync_to_async

from assessments import services
from assessments.grading import GradeInput, grade_by_rules
from assessments.grading.summary import not_rated_summary
from assessments.placement import Placement
from assessments.transcript import Transcript
from tutor import metrics, recovery
from tutor.realtime import clock, wire
from tutor.realtime.failures import SILENT, UpstreamFailure
from tutor.realtime.logs import BoundLogger
from tutor.realtime.relay import LearnerPort, SpeechRelay
from tutor.realtime.wire import State
from tutor.runtime.config import SessionConfig
from tutor.runtime.connection import TutorConnection
from tutor.runtime.delivery import AssessmentDelivery
from tutor.runtime.handover import DeliveryOutcome, TutorLink
from tutor.runtime.judge import AnswerJudge
from tutor.runtime.narrator import Narrator
from tutor.runtime.phase import Phase, SessionPhase
from tutor.runtime.store import DjangoAssessmentStore, SessionRows

db = database_sync_to_async


class SessionOutcome:
    def __init__(
        self,
        *,
        tutor: TutorLink,
        config: SessionConfig,
        rows: SessionRows,
        phase: SessionPhase,
        placement: Placement,
        transcript: Transcript,
        judge: AnswerJudge,
        connection: TutorConnection,
        narrator: Narrator,
        relay: SpeechRelay,
        learner: LearnerPort,
        spawn: Callable[[Coroutine, str], asyncio.Task],
        ended: Callable[[], Awaitable[None]],
        log: BoundLogger,
    ):
        self.tutor = tutor  # the handover's view of the session (its state changes through it)
        self.config = config
        self.rows = rows
        self.phase = phase
        self.placement = placement
        self.transcript = transcript
        self.judge = judge
        self.connection = connection
        self.narrator = narrator
        self.relay = relay
        self.learner = learner
        self.spawn = spawn
        self.ended = ended  # the session is over: its remaining tasks are cancelled
        self.log = log
        self.delivery: AssessmentDelivery | None = None
        self.delivered: DeliveryOutcome | None = None
        self.not_rated = False  # ended without enough evidence for a level
        self._creating: asyncio.Future | None = None  # the assessment row's creation (its id)

    @property
    def status(self) -> str:
        """The assessment's status as teachers see it live."""
        return self.delivered.status if self.delivered else "not_rated" if self.not_rated else "pending"

    async def end_before_start(self, code: str, message: str, reason: str) -> None:
        """The tutor session could not start: the learner is told in Parla's words (the upstream's own
        text is in the log), the session ends with `reason`, and none of its tasks is left running.
        A resumed placement whose upstream cannot start has its stored answers: with enough rated
        ones its assessment is made from them and delivered as the tutor's are when it is gone (as
        text), not thrown away as not rated."""
        await self.learner.send_event(wire.error(code, message))
        self.placement.finish_early(reason)
        if self.rows.session_id is not None and self.placement.has_evidence(self.config.min_rated_answers):
            await self.begin()  # its delivery ends the session, then its tasks
            return
        await self.end_unrated(reason)
        await self.ended()  # the start task is the caller and ends next

    async def time_cap(self) -> None:
        await clock.current().sleep(self.config.max_seconds)  # the session's time budget, not a settle wait
        if self.phase.now.placing:
            self.log.info("session time cap reached")
            await self.end_placement("time_cap")

    async def upstream_failed(self, failure: UpstreamFailure) -> None:
        """Responses keep failing, or fail in a way retrying cannot help (quota, model access): placement
        ends with what is known, the learner is told why, the session records it."""
        if not self.phase.now.placing:
            return
        self.log.warning("placement ended by upstream failures", extra={"reason": failure.end_reason})
        await self.learner.send_event(wire.error(failure.code, failure.message))
        await self.end_placement(failure.end_reason)

    async def upstream_lost(self, expired: bool, silent: bool = False) -> None:
        """No upstream session to resume: the delivery falls back to text when the tutor is gone. An
        upstream that stopped answering is named to the learner (otherwise they would see nothing)."""
        if silent:
            await self.learner.send_event(wire.error(SILENT.code, SILENT.message))
        await self.end_placement("upstream_expired" if expired else "upstream_error")

    async def end_placement(self, reason: str) -> None:
        """Placement ends early: the answer in progress is judged first, then the assessment begins."""
        await self.judge.close(then_assess=False)
        await self.judge.settled()  # a rating in flight (a reply's end) finishes first: else it finds placement over
        self.placement.finish_early(reason)
        await self.begin()

    async def begin(self) -> None:
        """Persist the assessment first, then hand it to the delivery worker (idempotent).

        Without enough evidence (placement.has_evidence) there is no level to deliver: the session
        ends `not_rated`, and the learner is told why.
        """
        if not self.phase.now.placing:
            return
        await self.judge.settled()  # the answers already given are judged before the level is final
        if not self.phase.now.placing:
            return
        if not self.placement.has_evidence(self.config.min_rated_answers):
            await self.end_unrated(self.placement.end_reason or "learner_stopped")
            return
        self.phase.to(Phase.ASSESSING)
        await self._create(services.create_assessment, self.placement.rating, self.placement.partial)
        self.log.info("assessment created", extra={"level": self.placement.rating})
        metrics.assessment("pending")
        await self.tutor.set_state(State.ASSESSING)
        self.delivery = AssessmentDelivery(
            assessment_id=self.rows.assessment_id,
            grade_input=self.grade_input(),
            grader=self.config.grader,
            tutor=self.tutor,
            learner=self.learner,
            store=DjangoAssessmentStore(),
            config=self.config.handover,
        )
        self.spawn(self._deliver(), "delivery")

    async def _deliver(self) -> None:
        outcome = self.delivered = await self.delivery.run()
        self.log.info("handover finished", extra={"status": outcome.status, "speaker": outcome.speaker})
        metrics.handover_finished(outcome.timings)
        await self.end(self.placement.end_reason or "ceiling")
        await self.ended()  # time cap, upstream watch: the session has ended

    async def _create(self, create: Callable[..., int], *args) -> None:
        """The assessment row (`create(session_id, *args)`), its id bound to the log. Shielded: a task
        cancelled meanwhile (the learner left) leaves the row's creation to end, and `keep_undelivered`
        finds the row by it."""
        self._creating = asyncio.ensure_future(db(create)(self.rows.session_id, *args))
        self.rows.assessment_id = await asyncio.shield(self._creating)
        self.log.bind(assessment_id=self.rows.assessment_id)

    async def end_unrated(self, reason: str) -> None:
        """The session ends without a level: a session row with no (or too few) answers is stored not
        rated, never with a default level."""
        if self.rows.session_id is not None:
            self.phase.to(Phase.ASSESSING)
            await self._not_rated()
        await self.end(reason)

    async def _not_rated(self) -> None:
        """Too little evidence for a level: the assessment is stored `not_rated` and the learner told so."""
        self.not_rated = True
        metrics.assessment("not_rated")
        # Voice without words: says the demo cannot understand speech (or, with the API, that it was not transcribed).
        recognizer = getattr(self.connection.upstream, "kind", "") == "openai"
        summary = not_rated_summary(self.grade_input(), recognizer=recognizer)
        await self._create(services.create_unrated_assessment, self.placement.partial, "", summary)
        self.log.info(
            "session not rated",
            extra={"rated_answers": self.placement.rated_answers, "end_reason": self.placement.end_reason},
        )
        self.relay.mute()  # the tutor says nothing more; the page shows why there is no level
        await self.learner.send_event(
            wire.assessment(self.rows.assessment_id, None, {}, summary, "", "not_rated", self.placement.partial)
        )

    async def end(self, reason: str) -> None:
        """The session is over (idempotent); the learner's socket may stay open to show the result."""
        if self.phase.now.over:
            return
        self.phase.to(Phase.ENDED)
        metrics.session_ended(reason)  # before the learner is told (a scrape after that sees it)
        if self.rows.session_id is not None:
            await db(services.end_session)(self.rows.session_id, reason)
            await recovery.heartbeats.leave(self.rows.session_id)
        await self.tutor.set_state(State.ENDED)
        if self.phase.now is not Phase.CLOSED:  # `close` closes them itself
            await self.narrator.discard()  # prepared for a handover that did not come (not rated)
            await self.connection.close()
        self.log.info("tutor session ended", extra={"reason": reason})

    async def keep_undelivered(self, was: Phase, reason: str) -> None:
        """On disconnect (`was`: the phase the session was in): an assessment that was not delivered is
        graded by the rules and kept; a session that ends here with too little evidence is kept as not
        rated."""
        if was.placing:
            self.placement.finish_early("learner_left")
            if not self.placement.has_evidence(self.config.min_rated_answers):
                await self._not_rated()
                return
            await self._create(services.create_assessment, self.placement.rating, self.placement.partial)
        elif self._creating is not None:  # its creation may have been cancelled with the tasks: not the row
            self.rows.assessment_id = await self._creating
        if self._creating is not None:
            kept = await db(services.keep_undelivered)(
                self.rows.assessment_id, grade_by_rules(self.grade_input()), f"learner disconnected ({reason})"
            )
            if kept:
                self.log.info("undelivered assessment kept")

    def grade_input(self) -> GradeInput:
        return self.transcript.grade_input(
            self.placement,
            target_language=self.config.target_language,
            native_language=self.config.native_language,
            feedback_language=self.config.feedback_language,
        )
