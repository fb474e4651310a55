"""TutorSessionRuntime: one learner's live session, between the consumer and the upstream.

It keeps the session's lifecycle (start, resume after an expiry, stop, end, close), its state and its
tasks; the rest is done by parts with one job each:

    Transcript          assessments.transcript: what was said, for grading, replay and Turn rows
    ResponseScheduler   tutor.runtime.responses: one response at a time, interruptions, truncation
    ProbeHandler        tutor.runtime.probes: the tutor's record_probe calls -> placement
    AssessmentDelivery  tutor.runtime.delivery: the handover to the spoken summary
    session_snapshot    tutor.live: what teachers see

Every task it starts is owned and, in `close()`, cancelled and awaited: after a session ends none of
its tasks remains. The consumer stays thin: it validates browser frames and calls the methods here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from assessments import services
from assessments.grading import Grader, GradeInput, get_grader, grade_by_rules
from assessments.placement import Placement, ProbeRecord
from assessments.transcript import LEARNER, TUTOR, Transcript
from tutor import live, persona, recovery
from tutor.realtime import wire
from tutor.realtime.client import RealtimeClient, RealtimeClosed, RealtimeError
from tutor.realtime.logs import bind
from tutor.realtime.relay import LearnerPort, SpeechRelay
from tutor.realtime.tasks import OwnedTasks
from tutor.realtime.wire import ClientError, State
from tutor.runtime.delivery import AssessmentDelivery, DeliveryOutcome, HandoverConfig, TutorLink
from tutor.runtime.probes import ProbeHandler
from tutor.runtime.responses import ResponseScheduler, assistant_text_item, user_text_item
from tutor.runtime.store import DjangoAssessmentStore
from tutor.upstream import Upstream, open_narrator, resolve_upstream

logger = logging.getLogger(__name__)

db = database_sync_to_async
EXPIRED_CLOSE_CODE = 1001  # the API closes an expired session with 1001 "going away"
MAX_RESUMES = 3  # 60-minute sessions: three resumes is far beyond any placement's time cap


@dataclass(frozen=True)
class SessionConfig:
    target_language: str
    native_language: str
    tutor_voice: str
    summary_voice: str
    transcription_model: str
    speed_beginner: float
    speed_default: float
    max_seconds: float
    step_timeout: float
    grader: Grader = field(hash=False)

    @classmethod
    def for_learner(cls, learner) -> "SessionConfig":
        return cls(
            target_language=learner.target_language,
            native_language=learner.native_language,
            tutor_voice=settings.PARLA_TUTOR_VOICE,
            summary_voice=settings.PARLA_SUMMARY_VOICE,
            transcription_model=settings.PARLA_TRANSCRIPTION_MODEL,
            speed_beginner=settings.PARLA_SPEED_BEGINNER,
            speed_default=settings.PARLA_SPEED_DEFAULT,
            max_seconds=settings.PARLA_SESSION_MAX_MINUTES * 60,
            step_timeout=settings.PARLA_STEP_TIMEOUT,
            grader=get_grader(),
        )

    @property
    def handover(self) -> HandoverConfig:
        return HandoverConfig(summary_voice=self.summary_voice, step_timeout=self.step_timeout)


class TutorSessionRuntime(TutorLink):
    """The live session of one learner connection."""

    def __init__(
        self,
        learner: LearnerPort,
        learner_id: int,
        config: SessionConfig,
        upstream: Upstream | None = None,
        learner_name: str = "",
    ):
        self.learner = learner
        self.learner_id = learner_id
        self.learner_name = learner_name or f"learner {learner_id}"
        self.config = config
        self.upstream = upstream
        self.placement = Placement()
        self.transcript = Transcript()
        self.session_id: int | None = None
        self.assessment_id: int | None = None
        self.state = State.READY
        self.client: RealtimeClient | None = None
        self.relay = SpeechRelay(
            learner, role="tutor", voice=lambda: self.client.tracker.voice, on_transcript=self._tutor_said
        )
        self.resumes = 0
        self.delivery: AssessmentDelivery | None = None
        self.delivery_outcome: DeliveryOutcome | None = None
        self.log = bind(logger, session_id=None, learner_id=learner_id)
        self.tasks = OwnedTasks(f"{id(self):x}")
        self.responses = ResponseScheduler(
            client=lambda: self.client,
            learner=learner,
            relay=self.relay,
            step_timeout=config.step_timeout,
            may_respond=lambda: self.assessment_id is None,
            spawn=self._spawn,
            log=self.log,
        )
        self.probes = ProbeHandler(
            placement=self.placement,
            responses=self.responses,
            store=self._store_probe,
            on_recorded=self._send_level,
            on_finished=self.begin_assessment,
            level_session=lambda: self._tutor_session(initial=False),
            step_timeout=config.step_timeout,
            log=self.log,
        )
        self._accepting_audio = False
        self._upstream_ready = False  # configured (session.updated) and, after a resume, replayed
        self._closing = False
        self._ended = False
        self._handlers = {
            "response.created": self.on_response_created,
            "response.done": self.on_response_done,
            "input_audio_buffer.speech_started": self.on_speech_started,
            "conversation.item.input_audio_transcription.completed": self.on_input_transcription_completed,
            "response.function_call_arguments.done": self.on_function_call_arguments_done,
            "error": self.on_error,
        }

    @property
    def _tasks(self) -> set[asyncio.Task]:
        return self.tasks.running

    # --- lifecycle (called by the consumer) ------------------------------------------------------

    def launch(self) -> None:
        """Start the session in an owned task: the consumer's receive loop is never held up."""
        if self.session_id is not None or self.tasks:
            raise ClientError("already_started", "The session has already started.")
        self._spawn(self._start(), "start")

    async def _start(self) -> None:
        await self.set_state(State.CONNECTING)
        try:
            self.upstream = self.upstream or await resolve_upstream()
            self.session_id = await db(services.start_session)(
                self.learner_id,
                upstream=self.upstream.kind,
                model=self.upstream.model,
                target_language=self.config.target_language,
            )
            self.log.bind(session_id=self.session_id)
            self._spawn(recovery.keep_alive(self.session_id), "heartbeat")  # other processes leave it alone
            await self._connect_tutor()
        except (RealtimeError, TimeoutError, OSError) as exc:
            self.log.warning("upstream unavailable", extra={"error": str(exc)})
            await self.learner.send_event(
                wire.error("upstream_unavailable", "The tutor could not be reached. Please try again.")
            )
            await self._end("upstream_error")
            return
        self.log.info("tutor session started", extra={"upstream": self.upstream.kind})
        self._spawn(self._watch_upstream(), "watch-upstream")
        self._spawn(self._time_cap(), "time-cap")
        await self._send_level()
        self._upstream_ready = True
        self._accepting_audio = True
        await self.set_state(State.LISTENING)
        await self.responses.create()  # the tutor greets and asks the first question

    async def _connect_tutor(self) -> None:
        """Open and configure the tutor's upstream session (session.updated confirms the config)."""
        self.client = self.upstream.client("tutor", handler=self.on_upstream_event)
        created = await self.client.open(self._tutor_session(initial=True), self.config.step_timeout)
        await db(services.set_upstream_session_id)(self.session_id, created.session.id or "")

    async def _resume(self) -> bool:
        """A new upstream session after the old one expired: the conversation is replayed as text.

        Audio items cannot be re-created, so each turn goes back as a text message (DESIGN section 2).
        Nothing else is sent meanwhile: the response lock is held and learner audio waits for
        `_upstream_ready`, so the new session is configured before it can say anything.
        """
        old = self.client
        await old.close()  # its reader has ended; this awaits it
        async with self.responses.lock:
            self._upstream_ready = False
            try:
                await self._connect_tutor()
                for utterance in self.transcript.conversation:
                    item = user_text_item if utterance.role == LEARNER else assistant_text_item
                    await self.responses.add_item(item(utterance.text))
            except (RealtimeError, TimeoutError, OSError) as exc:
                self.log.warning("upstream resume failed", extra={"error": str(exc)})
                await self.client.close()
                self.client = old
                return False
            self._upstream_ready = True
            self.resumes += 1
            conversation = self.transcript.conversation
            self.log.info("upstream session resumed", extra={"turns": len(conversation), "resumes": self.resumes})
            if conversation and conversation[-1].role == LEARNER:
                await self.responses.respond()  # the learner's last answer has had no reply yet
            # else the tutor spoke last: its question stands, and the learner answers it
        return True

    async def stop(self) -> None:
        """The learner pressed Stop: assess what is known (or just end if nothing was probed)."""
        if self.assessment_id is not None or self._ended:
            return
        if self.client is None:
            await self._end("learner_stopped")
            return
        self.placement.finish_early("learner_stopped")
        await self.begin_assessment()

    async def close(self, reason: str = "learner_left") -> None:
        """The learner's socket is gone: cancel and await every task, keep what was learned."""
        self._closing = True
        self._accepting_audio = False
        await self.tasks.cancel_all()
        if self.client is not None:
            await self.client.close()
        if self.session_id is not None:
            await self._keep_undelivered(reason)
            await db(services.end_session)(self.session_id, reason)
            if self.state != State.ENDED:
                self.state = State.ENDED
                await self._announce()  # teachers see sessions that end by the learner leaving, too
        self.log.info("tutor session closed", extra={"reason": reason})

    async def _end(self, reason: str) -> None:
        if self._ended:
            return
        self._ended = True
        self._accepting_audio = False
        if self.session_id is not None:
            await db(services.end_session)(self.session_id, reason)
        await self.set_state(State.ENDED)
        if self.client is not None and not self._closing:
            await self.client.close()
        self.log.info("tutor session ended", extra={"reason": reason})

    # --- learner input ----------------------------------------------------------------------------

    async def learner_audio(self, pcm: bytes) -> None:
        if self._accepting_audio and self._upstream_ready and self.client.is_open:
            try:
                await self.client.send_audio(pcm)
            except RealtimeClosed:
                pass  # the upstream is closing or being resumed: _watch_upstream deals with it

    async def answer_text(self, text: str) -> None:
        if self.session_id is None or self.client is None:
            raise ClientError("not_started", "The session is still starting; answer when the tutor asks.")
        if self.assessment_id is not None or self._ended:
            raise ClientError("placement_ended", "The placement has ended; this answer was not recorded.")
        await self._learner_said(text, item_id="")
        async with self.responses.lock:  # not while a resumed session is being configured
            await self.responses.add_item(user_text_item(text))
        await self.responses.create(interrupt=True)

    # --- TutorLink (used by the handover) -------------------------------------------------------------

    def stop_learner_audio(self) -> None:
        self._accepting_audio = False

    async def open_narrator(self, voice: str):
        return await open_narrator(self.upstream, voice, self.learner, self.config.step_timeout, self._tutor_said)

    async def set_state(self, state: State) -> None:
        """The one way the session's state changes: teachers and the learner are told."""
        if state != self.state:
            self.state = state
            await self._announce()  # first: the learner's reaction (e.g. leaving) may cancel this task
            await self.learner.send_event(wire.state(state))

    # --- upstream events (dispatched from the client's reader task: never await a request here) -----

    async def on_upstream_event(self, event: Any) -> None:
        if await self.relay.handle(event):
            return
        handler = self._handlers.get(event.type)
        if handler is not None:
            await handler(event)

    async def on_response_created(self, event: Any) -> None:
        if self.assessment_id is None:
            await self.set_state(State.TUTOR_SPEAKING)

    async def on_response_done(self, event: Any) -> None:
        if self.assessment_id is None and not self.client.tracker.has_active_response:
            await self.set_state(State.LISTENING)

    async def on_speech_started(self, event: Any) -> None:
        # Barge-in: the server cancels the response itself (interrupt_response).
        if self.relay.speaking_item and self.assessment_id is None:
            await self.responses.interrupt_playback()

    async def on_input_transcription_completed(self, event: Any) -> None:
        await self._learner_said(event.transcript, item_id=event.item_id)

    async def on_function_call_arguments_done(self, event: Any) -> None:
        self._spawn(self.probes.handle(self.client, event.call_id, event.name, event.arguments), "probe")

    async def on_error(self, event: Any) -> None:
        error = event.error
        if error.code == "session_expired":
            return  # announced before the 1001 close; _watch_upstream resumes the session
        self.log.warning(
            "upstream error", extra={"code": error.code, "error_message": error.message, "event_id": error.event_id}
        )
        await self.learner.send_event(wire.error("upstream_error", error.message))

    # --- the assessment -----------------------------------------------------------------------------

    async def begin_assessment(self) -> None:
        """Persist the assessment first, then hand it to the delivery worker (idempotent)."""
        if self.assessment_id is not None:
            return
        self.assessment_id = await db(services.create_assessment)(
            self.session_id, self.placement.rating, self.placement.partial
        )
        self.log.bind(assessment_id=self.assessment_id)
        self.log.info("assessment created", extra={"level": self.placement.rating})
        await self.set_state(State.ASSESSING)
        self.delivery = AssessmentDelivery(
            assessment_id=self.assessment_id,
            grade_input=self._grade_input(),
            grader=self.config.grader,
            tutor=self,
            learner=self.learner,
            store=DjangoAssessmentStore(),
            config=self.config.handover,
        )
        self._spawn(self._deliver(), "delivery")

    async def _deliver(self) -> None:
        outcome = self.delivery_outcome = await self.delivery.run()
        self.log.info("handover finished", extra={"status": outcome.status, "speaker": outcome.speaker})
        await self._end(self.placement.end_reason or "ceiling")

    async def _keep_undelivered(self, reason: str) -> None:
        """On disconnect: an assessment that was not delivered is graded by the rules and kept."""
        if self.assessment_id is None and self.placement.probes and not self._ended:
            self.placement.finish_early("learner_left")
            self.assessment_id = await db(services.create_assessment)(
                self.session_id, self.placement.rating, self.placement.partial
            )
            self.log.bind(assessment_id=self.assessment_id)
        if self.assessment_id is not None:
            kept = await db(services.keep_undelivered)(
                self.assessment_id, grade_by_rules(self._grade_input()), f"learner disconnected ({reason})"
            )
            if kept:
                self.log.info("undelivered assessment kept")

    def _grade_input(self) -> GradeInput:
        return self.transcript.grade_input(
            self.placement,
            target_language=self.config.target_language,
            native_language=self.config.native_language,
        )

    # --- timers and upstream health -------------------------------------------------------------------

    async def _time_cap(self) -> None:
        await asyncio.sleep(self.config.max_seconds)  # the session's time budget, not a settle wait
        if self.assessment_id is None:
            self.log.info("session time cap reached")
            self.placement.finish_early("time_cap")
            await self.begin_assessment()

    async def _watch_upstream(self) -> None:
        while True:
            await self.client.closed.wait()
            if self._closing or self._ended:
                return
            expired = self.client.close_code == EXPIRED_CLOSE_CODE
            self.log.warning(
                "upstream session ended", extra={"code": self.client.close_code, "reason": self.client.close_reason}
            )
            if self.assessment_id is not None:
                return  # the handover has its own timeouts and falls back to text
            if expired and self.resumes < MAX_RESUMES and await self._resume():
                continue
            self.placement.finish_early("upstream_expired" if expired else "upstream_error")
            await self.begin_assessment()  # the delivery falls back to text when the tutor is gone
            return

    # --- transcript, level and the live view -----------------------------------------------------------

    def _tutor_session(self, *, initial: bool) -> dict:
        session = persona.tutor_session_config(
            target_language=self.config.target_language,
            native_language=self.config.native_language,
            level=self.placement.current_level,
            voice=self.config.tutor_voice,
            transcription_model=self.config.transcription_model,
            speed_beginner=self.config.speed_beginner,
            speed_default=self.config.speed_default,
        )
        if not initial:
            # The voice is fixed once the tutor has spoken: a level update never mentions it.
            del session["audio"]["output"]["voice"]
        return session

    async def _learner_said(self, text: str, item_id: str) -> None:
        utterance = await self._record(LEARNER, text, item_id)
        if utterance is not None:
            await self.learner.send_event(wire.transcript(LEARNER, item_id, utterance.text, final=True))

    async def _tutor_said(self, role: str, item_id: str, text: str) -> None:
        await self._record(role, text, item_id)

    async def _record(self, role: str, text: str, item_id: str):
        """Append to the transcript and store the Turn row: one place for both."""
        utterance = self.transcript.add(role, text, item_id, self.placement.current_level)
        if utterance is not None:
            await db(services.record_turn)(self.session_id, role, utterance.text, item_id, utterance.level)
        return utterance

    async def _store_probe(self, probe: ProbeRecord, call_id: str) -> None:
        await db(services.record_probe)(self.session_id, probe.level, probe.outcome, probe.evidence, call_id)

    async def _send_level(self) -> None:
        await self.learner.send_event(wire.level(self.placement.current_level, self.placement.ladder()))
        await self._announce()

    async def _announce(self) -> None:
        """A snapshot for the teachers' live view (tutor.live)."""
        if self.session_id is None:
            return
        outcome = self.delivery_outcome
        await live.announce(
            live.session_snapshot(
                session_id=self.session_id,
                learner=self.learner_name,
                language=self.config.target_language,
                state=self.state,
                placement=self.placement,
                assessment_id=self.assessment_id,
                assessment_level=outcome.result.level if outcome else None,
                assessment_status=outcome.status if outcome else "pending",
            )
        )

    # --- owned tasks ------------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine, name: str) -> asyncio.Task:
        return self.tasks.spawn(self._guard(coro, name), name)

    async def _guard(self, coro: Coroutine, name: str) -> None:
        """Run an owned task; an unexpected failure is logged and reported, never silently lost."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except ClientError as exc:
            await self.learner.send_event(exc.as_event())
        except RealtimeClosed:
            # The upstream went away under this task; _watch_upstream resumes it or ends the session.
            self.log.info("session task stopped: upstream closed", extra={"task": name})
        except Exception as exc:
            self.log.exception("session task failed", extra={"task": name})
            if not self._closing:
                await self.learner.send_event(wire.error("session_error", f"Something went wrong ({name}): {exc}"))
