"""TutorSessionRuntime: one learner's live session, between the consumer and the upstream.

It holds the session's phase (tutor.runtime.phase) and its lifecycle (start, stop, end, close), and
dispatches the upstream's events and the learner's input to the parts, each with one job:

    SessionConfig       tutor.runtime.config: what the session is set up with, from the settings
    TutorConnection     tutor.runtime.connection: the tutor's upstream; resume, held audio, the watch
    TutorEvents         tutor.runtime.events: the upstream's events to the parts; the turn state shown
    Narrator            tutor.runtime.narrator: the summary voice's session, prepared early or at the handover
    Transcript          assessments.transcript: what was said, for grading, replay and Turn rows
    AnswerCollector     tutor.runtime.answers: the learner's answers, fragments merged, with their audio
    AnswerJudge         tutor.runtime.judge: closes each answer, judges it once, stores it with its fluency
    ResponseScheduler   tutor.runtime.responses: one response at a time, interruptions, truncation
    ProbeHandler        tutor.runtime.probes: the tutor's record_probe calls, a second opinion
    FailedResponses     tutor.runtime.retries: failed responses retried, or placement ended
    SessionOutcome      tutor.runtime.outcome: assessed, not rated or kept undelivered, and the end
    AssessmentDelivery  tutor.runtime.delivery: the handover to the spoken summary
    announce_session    tutor.live: what teachers see
    resumption          tutor.runtime.resumption: detached when the socket drops, rebuilt on a new one

Every task it starts is owned and, in `close()`, cancelled and awaited: none remains after it ends.
The consumer stays thin: it validates browser frames and calls the methods here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine

from channels.db import database_sync_to_async

from assessments import services
from assessments.placement import Placement, PlacementUpdate, starting_level
from assessments.transcript import Transcript
from tutor import live, metrics, recovery
from tutor.realtime import wire
from tutor.realtime.client import RealtimeClosed, RealtimeError, RealtimeRefused
from tutor.realtime.logs import bind
from tutor.realtime.relay import LearnerPort, SpeechRelay
from tutor.realtime.tasks import OwnedTasks, cancel_and_wait
from tutor.realtime.wire import ClientError, State
from tutor.runtime.answers import AnswerCollector
from tutor.runtime.config import SessionConfig
from tutor.runtime.connection import TutorConnection
from tutor.runtime.contact import is_fatal_request_error
from tutor.runtime.events import TutorEvents
from tutor.runtime.handover import TutorLink
from tutor.runtime.judge import AnswerJudge
from tutor.runtime.narrator import Narrator
from tutor.runtime.outcome import SessionOutcome
from tutor.runtime.phase import Phase, SessionPhase
from tutor.runtime import resumption
from tutor.runtime.probes import ProbeHandler
from tutor.runtime.responses import ResponseScheduler, user_text_item
from tutor.runtime.retries import FailedResponses
from tutor.runtime.store import SessionRows
from tutor.upstream import Upstream, resolve_upstream

__all__ = ["SessionConfig", "TutorSessionRuntime"]
logger = logging.getLogger(__name__)
db = database_sync_to_async


class TutorSessionRuntime(TutorLink):
    """The live session of one learner connection."""

    def __init__(
        self, learner: LearnerPort, learner_id: int, config: SessionConfig, upstream: Upstream | None = None,
        learner_name: str = "", stored: resumption.StoredSession | None = None,
    ):
        self.learner, self.learner_id, self.config = learner, learner_id, config
        self.learner_name = learner_name or f"learner {learner_id}"
        self.phase = SessionPhase()
        self.rows = SessionRows()
        self.state = State.READY
        self.stored = stored  # resumed: the session as stored, continued on this connection
        self.placement = stored.placement if stored else Placement(starting_level(config.self_assessment))
        self.transcript = stored.transcript if stored else Transcript()
        self.answers = AnswerCollector()
        self.log = bind(logger, session_id=None, learner_id=learner_id)
        self.tasks = OwnedTasks(f"{id(self):x}")
        parts = {"phase": self.phase, "spawn": self._spawn, "log": self.log}
        self.connection = self.client = TutorConnection(  # `client`: the handover's name for it (TutorLink)
            phase=self.phase, transcript=self.transcript, log=self.log, step_timeout=config.step_timeout,
            upstream=upstream, configuration=self._configuration,
            on_opened=lambda created: db(services.set_upstream_session_id)(self.session_id, created.session.id or ""),
        )
        self.judge = AnswerJudge(
            answers=self.answers, placement=self.placement, transcript=self.transcript, rows=self.rows,
            rater=config.rater, target_language=config.target_language, step_timeout=config.step_timeout,
            learner=learner, on_judged=self._judged, **parts,
        )
        self.relay = SpeechRelay(learner, role="tutor", voice=self.connection.voice, on_transcript=self.judge.tutor_said)
        self.narrator = Narrator(learner, step_timeout=config.step_timeout, on_transcript=self.judge.tutor_said)
        self.responses = ResponseScheduler(
            connection=self.connection, learner=learner, relay=self.relay, step_timeout=config.step_timeout, **parts
        )
        self.probes = ProbeHandler(answers=self.answers, responses=self.responses, log=self.log, on_answer=self.judge.close)
        self.outcome = SessionOutcome(
            tutor=self, config=config, rows=self.rows, placement=self.placement, transcript=self.transcript,
            judge=self.judge, connection=self.connection, narrator=self.narrator, relay=self.relay, learner=learner,
            ended=self.tasks.cancel_all, **parts,
        )
        self.failures = FailedResponses(
            connection=self.connection, responses=self.responses, learner=learner, give_up=self.outcome.upstream_failed,
            **parts,
        )
        self.events = TutorEvents(
            tutor=self, connection=self.connection, responses=self.responses, relay=self.relay, failures=self.failures,
            probes=self.probes, judge=self.judge, answers=self.answers, placement=self.placement, learner=learner,
            outcome=self.outcome, **parts,
        )
        self.connection.handler = self.events.handle  # every event of every upstream session it opens
        self.judge.on_finished = self.outcome.begin  # the placement is over: the assessment begins
        self._start_task: asyncio.Task | None = None  # connecting: until the tutor is configured
        self._session_row: asyncio.Future | None = None  # the session row's creation (its id)

    @property
    def session_id(self) -> int | None:
        return self.rows.session_id

    @property
    def assessment_id(self) -> int | None:
        return self.rows.assessment_id

    @property
    def _tasks(self) -> set[asyncio.Task]:
        return self.tasks.running

    # --- lifecycle (called by the consumer) ------------------------------------------------------

    def launch(self) -> None:
        """Start the session in an owned task: the consumer's receive loop is never held up."""
        if self.session_id is not None or self.tasks:
            raise ClientError("already_started", "The session has already started.")
        self._start_task = self._spawn(self._start(), "start")

    async def _start(self) -> None:
        # First: the rater's word lists load (once per process) while the tutor connects and greets.
        self._spawn(self.config.rater.prepare(self.config.target_language), "rater-prepare")
        await self.set_state(State.CONNECTING)
        try:
            upstream = self.connection.upstream = self.narrator.upstream = self.connection.upstream or await resolve_upstream()
            # Shielded: a Stop while connecting cancels this task, never the row's creation (stop()
            # awaits it, so the row is ended rather than left open). A resumed session has its row.
            self._session_row = resumption.session_row(self, upstream)
            self.rows.session_id = await asyncio.shield(self._session_row)
            self.log.bind(session_id=self.session_id)
            recovery.heartbeats.join(self.session_id)  # other processes leave it alone until it ends
            await resumption.restore(self)  # the page learns its id; a resumed one, the conversation so far
            await self.connection.start(replay=self.stored is not None)
        except RealtimeRefused as exc:
            self.log.warning("upstream refused the session", extra={
                "status": exc.status, "close_code": exc.close_code, "code": exc.code, "error_message": exc.message})
            await self.outcome.end_before_start(exc.failure.code, exc.failure.message, exc.failure.end_reason)
            return
        except (RealtimeError, TimeoutError, OSError) as exc:
            self.log.warning("upstream unavailable", extra={"error": str(exc)})
            await self.outcome.end_before_start("upstream_unavailable", "The tutor could not be reached. Please try again.",
                                                "upstream_error")
            return
        self.log.info("tutor session started", extra={"upstream": upstream.kind})
        self._spawn(self.connection.watch(on_resumed=self._resumed, on_lost=self.outcome.upstream_lost), "watch-upstream")
        self._spawn(self.outcome.time_cap(), "time-cap")
        await self._placement_moved()
        if self.phase.now is not Phase.CONNECTING:
            return  # the upstream was lost meanwhile, and the session ended
        self.phase.to(Phase.CONVERSING)
        if self.stored is not None:
            await self._resumed()  # the tutor's question stands, or its reply is asked for again
        else:  # the tutor greets and asks: connecting -> tutor_speaking (never "your turn" first), then playback's
            await self.set_state(State.TUTOR_SPEAKING)
            await self.responses.create()
        self._spawn(self.events.follow_playback(), "follow-playback")

    async def stop(self, reason: str = "learner_stopped") -> None:
        """The learner pressed Stop (or the process drains, tutor/drain.py): assess what is known, or not rated."""
        if not self.phase.now.placing:
            return
        if self._start_task is not None and not self._start_task.done():
            # Still connecting: nothing was said. The start stops here (the tutor never greets).
            await cancel_and_wait(self._start_task)
            if self._session_row is not None and self.session_id is None:
                self.rows.session_id = await self._session_row
                self.log.bind(session_id=self.session_id)
            await self.connection.close()
            self.placement.finish_early(reason)
            await self.outcome.end_unrated(reason)
            return
        await self.outcome.end_placement(reason)

    async def close(self, reason: str = "learner_left", detach: bool = False) -> None:
        """The learner's socket is gone: cancel and await every task, keep what was learned. `detach`
        (it dropped, or the drain hands it over): an open placement awaits its learner (resumption)."""
        detached = detach and await resumption.settle(self)
        was = self.phase.to(Phase.CLOSED)
        await self.tasks.cancel_all()
        await self.narrator.discard()
        await self.connection.close()
        if self.session_id is not None:
            try:  # detached, or ended as before (an assessment kept; a cut handover shown on reconnecting)
                await resumption.leave(self, was, reason, detach=detach, detached=detached)
            finally:
                await recovery.heartbeats.leave(self.session_id)
            if self.state != State.ENDED and not detached:
                metrics.session_ended(reason)
                self.state = State.ENDED
                await live.announce_session(self)  # teachers see sessions that end by the learner leaving, too
        self.log.info("tutor session closed", extra={"reason": reason})

    async def _resumed(self) -> None:
        if not self.responses.reply_complete:  # its last reply was cut (or never came): the tutor's turn again,
            await self.set_state(State.TUTOR_SPEAKING)  # then playback's (a rebuilt session is still `connecting`)
            self.responses.want("resume")
        else:
            await self.set_state(State.LISTENING)  # its question stands: the learner's turn

    # --- learner input ----------------------------------------------------------------------------

    async def learner_audio(self, pcm: bytes) -> None:
        if not self.phase.now.takes_audio:
            return
        self.answers.audio(pcm)  # the answer's recording and fluency, whatever the upstream does
        await self.connection.learner_audio(pcm)

    async def answer_text(self, text: str) -> None:
        if self.session_id is None or self.connection.current is None:
            raise ClientError("not_started", "The session is still starting; answer when the tutor asks.")
        if not self.phase.now.placing:
            raise ClientError("placement_ended", "The placement has ended; this answer was not recorded.")
        self.responses.learner_answered()
        await self.judge.show(self.answers.written(text, self.placement.current_level))
        try:
            async with self.responses.lock:  # not while a resumed session is being configured
                await self.responses.add_item(user_text_item(text))
            await self.responses.answer_written()
        except RealtimeClosed:
            pass  # the upstream went away: the connection's watch resumes (replaying this answer) or ends it

    # --- TutorLink (used by the handover) -------------------------------------------------------------

    def stop_learner_audio(self) -> None:
        if self.phase.now is Phase.ASSESSING:
            self.phase.to(Phase.DELIVERING)

    async def set_state(self, state: State) -> None:
        """The one way the session's state changes: teachers and the learner are told."""
        if state != self.state:
            self.state = state
            await live.announce_session(self)  # first: the learner's reaction (e.g. leaving) may cancel this task
            await self.learner.send_event(wire.state(state))

    # --- the placement, the tutor's configuration and the transcript -----------------------------------

    async def _judged(self, update: PlacementUpdate) -> None:
        await self._placement_moved()
        if update.level_changed and not update.finished and self.connection.is_open and self.phase.now.placing:
            # The tutor's instructions and speed follow the new level: the scheduler sends them between
            # responses, before the next one starts (speed changes only between model turns).
            self.responses.update_session(self._configuration(initial=False))
            self.log.info("level changed", extra={"level": self.placement.current_level})

    async def _placement_moved(self) -> None:
        """The placement began or moved: the narrator is prepared once one answer may end it (the level
        is then said one round trip after the ceiling, DESIGN section 3; closed on any end if unused),
        the learner sees the level, the teachers the snapshot."""
        if self.placement.one_answer_from_end():
            self.narrator.prepare(self.config.summary_voice)
        await self.learner.send_event(wire.level(self.placement.current_level, self.placement.ladder()))
        await live.announce_session(self)

    def _configuration(self, initial: bool = True) -> dict:
        return self.config.tutor_session(self.placement.current_level, self.connection.upstream.model, initial=initial)

    # --- owned tasks ------------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine, name: str) -> asyncio.Task:
        task = self.tasks.spawn(self._guard(coro, name), name)
        # A task cancelled before its first step never starts `_guard`: `coro` is closed here ("never awaited").
        task.add_done_callback(lambda _: coro.close())
        return task

    async def _guard(self, coro: Coroutine, name: str) -> None:
        """Run an owned task; an unexpected failure is logged and reported, never silently lost."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except ClientError as exc:
            await self.learner.send_event(exc.as_event())
        except RealtimeClosed:
            # The upstream went away under this task; the connection's watch resumes it or ends the session.
            self.log.info("session task stopped: upstream closed", extra={"task": name})
        except Exception as exc:
            if is_fatal_request_error(exc):
                return  # the `error` event that refused it ends the session, told once (tutor.runtime.contact)
            self.log.exception("session task failed", extra={"task": name})
            if self.phase.now is not Phase.CLOSED:
                self.learner.session_failed()  # the exception's text is in the log; the session ends
