"""TutorSessionRuntime: one learner's live session, between the consumer and the upstream.

It keeps the session's lifecycle (start, resume after an expiry, stop, end, close), its state and its
tasks; the rest is done by parts with one job each:

    Transcript          assessments.transcript: what was said, for grading, replay and Turn rows
    AnswerCollector     tutor.runtime.answers: the learner's answers, fragments merged, with their audio
    Rater               assessments.rating: judges every answer once -> placement
    ResponseScheduler   tutor.runtime.responses: one response at a time, interruptions, truncation
    ProbeHandler        tutor.runtime.probes: the tutor's record_probe calls, a second opinion
    FailedResponses     tutor.runtime.retries: failed responses retried, or placement ended
    AssessmentDelivery  tutor.runtime.delivery: the handover to the spoken summary
    session_snapshot    tutor.live: what teachers see

Every task it starts is owned and, in `close()`, cancelled and awaited: after a session ends none of
its tasks remains. The consumer stays thin: it validates browser frames and calls the methods here.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from channels.db import database_sync_to_async
from django.conf import settings

from assessments import services
from assessments.fluency import measure
from config.openai_models import takes_reasoning
from assessments.grading import Grader, GradeInput, get_grader, grade_by_rules
from assessments.grading.summary import NOT_RATED_SUMMARY
from assessments.placement import Placement, starting_level
from assessments.rating import OfflineRater, Rater, get_rater
from assessments.services import feedback_language
from assessments.transcript import LEARNER, TUTOR, Transcript
from tutor import live, persona, recovery
from tutor.realtime import wire
from tutor.realtime.audio import BYTES_PER_MS
from tutor.realtime.client import RealtimeClient, RealtimeClosed, RealtimeError, RealtimeRefused
from tutor.realtime.failures import UNCLAIMED_ERROR_MESSAGE, UpstreamFailure
from tutor.realtime.fallback import SessionShape
from tutor.realtime.logs import bind
from tutor.realtime.relay import LearnerPort, SpeechRelay
from tutor.realtime.tasks import OwnedTasks, cancel_and_wait
from tutor.realtime.wire import ClientError, State
from tutor.runtime.answers import AnswerCollector, OpenAnswer
from tutor.runtime.contact import SilentReplies, fatal_upstream_error, is_fatal_request_error
from tutor.runtime.delivery import AssessmentDelivery, DeliveryOutcome, HandoverConfig, TutorLink
from tutor.runtime.probes import ProbeHandler
from tutor.runtime.responses import ResponseScheduler, assistant_text_item, user_text_item
from tutor.runtime.retries import FailedResponses
from tutor.runtime.store import DjangoAssessmentStore
from tutor.upstream import Upstream, open_narrator, resolve_upstream

logger = logging.getLogger(__name__)
T = TypeVar("T")

db = database_sync_to_async
# Work on a learner's audio (fluency measures, the span worth keeping) costs about 40 us per second of
# audio: 0.1-0.2 ms for an answer of a few seconds, less than a thread hop, whose hand-offs of the GIL
# stalled the event loop that relays every learner's audio (six executor threads waking ~240 times a
# second each at 200 learners). Single runs at 200: tutor audio p50 +83 -> +32 ms added, memory 0.87 ->
# 0.48 MiB per session; in a ladder the difference was within run-to-run variance (docs/benchmarks.md,
# "what this round's runs say"). Up to this much audio (at most ~1.2 ms of loop time) on the loop;
# longer audio (up to answers.MAX_AUDIO_MS) goes to a thread.
INLINE_AUDIO_MS = 30_000
EXPIRED_CLOSE_CODE = 1001  # the API closes an expired session with 1001 "going away"
MAX_RESUMES = 3  # 60-minute sessions: three resumes is far beyond any placement's time cap
HELD_AUDIO_FRAMES = 300  # learner audio held while the upstream resumes (30 s of the page's 100 ms frames)


async def audio_work(audio: bytes, func: Callable[..., T], *args) -> T:
    """`func(*args)`, CPU work on `audio`: on the event loop up to INLINE_AUDIO_MS, else in a thread."""
    if len(audio) <= INLINE_AUDIO_MS * BYTES_PER_MS:
        return func(*args)
    return await asyncio.to_thread(func, *args)


@dataclass(frozen=True)
class SessionConfig:
    target_language: str
    native_language: str
    tutor_voice: str
    summary_voice: str
    transcription_model: str
    reasoning_effort: str  # empty: the model's default
    speed_beginner: float
    speed_default: float
    max_seconds: float
    step_timeout: float
    grader: Grader = field(hash=False)
    rater: Rater = field(hash=False, default_factory=OfflineRater)
    min_rated_answers: int = 2  # fewer rated answers: the session ends not_rated
    self_assessment: str = ""  # the warm-up's answer on the start screen ("" = not sure)
    feedback_language: str = "en"  # the learner's native language when they asked for feedback in it

    @classmethod
    def for_learner(cls, learner) -> "SessionConfig":
        return cls(
            target_language=learner.target_language,
            native_language=learner.native_language,
            tutor_voice=settings.PARLA_TUTOR_VOICE,
            summary_voice=settings.PARLA_SUMMARY_VOICE,
            transcription_model=settings.PARLA_TRANSCRIPTION_MODEL,
            reasoning_effort=settings.PARLA_REASONING_EFFORT,
            speed_beginner=settings.PARLA_SPEED_BEGINNER,
            speed_default=settings.PARLA_SPEED_DEFAULT,
            max_seconds=settings.PARLA_SESSION_MAX_MINUTES * 60,
            step_timeout=settings.PARLA_STEP_TIMEOUT,
            grader=get_grader(),
            rater=get_rater(),
            min_rated_answers=settings.PARLA_MIN_RATED_ANSWERS,
            feedback_language=feedback_language(learner),
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
        self.placement = Placement(starting_level(config.self_assessment))
        self.transcript = Transcript()
        self.answers = AnswerCollector()
        self._rating = asyncio.Lock()  # one answer judged at a time, in order
        self._answer_rows = asyncio.Lock()  # one Turn row per answer, however its fragments interleave
        self.session_id: int | None = None
        self.assessment_id: int | None = None
        self.state = State.READY
        self.client: RealtimeClient | None = None
        self.relay = SpeechRelay(
            learner, role="tutor", voice=lambda: self.client.tracker.voice, on_transcript=self._tutor_said
        )
        self.resumes = 0
        self.shape = SessionShape()  # fallbacks the API's refusals made (kept across resumes)
        self.silent = SilentReplies(self)
        self.delivery: AssessmentDelivery | None = None
        self.delivery_outcome: DeliveryOutcome | None = None
        self.not_rated = False  # ended without enough evidence for a level
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
            answers=self.answers, responses=self.responses, log=self.log, on_answer=self._judge_open_answer
        )
        self.failures = FailedResponses(
            client=lambda: self.client,
            responses=self.responses,
            learner=learner,
            may_respond=lambda: self.assessment_id is None and not self._ended,
            give_up=self._upstream_failed,
            spawn=self._spawn,
            log=self.log,
        )
        self._reply_complete = False  # a response after the learner's last answer finished speaking
        self._accepting_audio = False
        self._held_audio: deque[bytes] = deque(maxlen=HELD_AUDIO_FRAMES)
        self._upstream_ready = False  # configured (session.updated) and, after a resume, replayed
        self._closing = False
        self._ended = False
        self._start_task: asyncio.Task | None = None  # connecting: until the tutor is configured
        self._session_row: asyncio.Future | None = None  # the session row's creation (its id)
        self._handlers = {
            "response.created": self.on_response_created,
            "response.done": self.on_response_done,
            "input_audio_buffer.speech_started": self.on_speech_started,
            "input_audio_buffer.committed": self.on_input_audio_buffer_committed,
            "conversation.item.input_audio_transcription.completed": self.on_input_transcription_completed,
            "conversation.item.input_audio_transcription.failed": self.on_input_transcription_failed,
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
        self._start_task = self._spawn(self._start(), "start")

    async def _start(self) -> None:
        # First: the rater's word lists load (once per process) while the tutor connects and greets.
        self._spawn(self.config.rater.prepare(self.config.target_language), "rater-prepare")
        await self.set_state(State.CONNECTING)
        try:
            self.upstream = self.upstream or await resolve_upstream()
            # Shielded: a Stop while connecting cancels this task, never the row's creation (stop()
            # awaits it, so the row is ended rather than left open).
            self._session_row = asyncio.ensure_future(
                db(services.start_session)(
                    self.learner_id,
                    upstream=self.upstream.kind,
                    model=self.upstream.model,
                    target_language=self.config.target_language,
                    self_assessment=self.config.self_assessment,
                    start_level=self.placement.current_level,
                )
            )
            self.session_id = await asyncio.shield(self._session_row)
            self.log.bind(session_id=self.session_id)
            recovery.heartbeats.join(self.session_id)  # other processes leave it alone until it ends
            await self._connect_tutor()
        except RealtimeRefused as exc:
            self.log.warning(
                "upstream refused the session",
                extra={"status": exc.status, "close_code": exc.close_code, "code": exc.code, "error_message": exc.message},
            )
            await self._end_before_start(exc.failure.code, exc.failure.message, exc.failure.end_reason)
            return
        except (RealtimeError, TimeoutError, OSError) as exc:
            self.log.warning("upstream unavailable", extra={"error": str(exc)})
            await self._end_before_start(
                "upstream_unavailable", "The tutor could not be reached. Please try again.", "upstream_error"
            )
            return
        self.log.info("tutor session started", extra={"upstream": self.upstream.kind})
        self._spawn(self._watch_upstream(), "watch-upstream")
        self._spawn(self._time_cap(), "time-cap")
        await self._send_level()
        self._upstream_ready = True
        self._accepting_audio = True
        # The tutor greets and asks the first question: the state goes from connecting to
        # tutor_speaking, never to "your turn" just before the tutor speaks; then it follows playback.
        await self.set_state(State.TUTOR_SPEAKING)
        await self.responses.create()
        self._spawn(self._follow_playback(), "follow-playback")

    async def _end_before_start(self, code: str, message: str, reason: str) -> None:
        """The tutor session could not start: the learner is told in Parla's words (the upstream's own
        text is in the log), the session ends with `reason`, and none of its tasks is left running."""
        await self.learner.send_event(wire.error(code, message))
        self.placement.finish_early(reason)
        if self.session_id is not None:
            await self._not_rated()  # a session row with no answer: not rated, never a default level
        await self._end(reason)
        await self.tasks.cancel_all()  # this start task is the caller and ends next

    async def _connect_tutor(self) -> None:
        """Open and configure the tutor's upstream session (session.updated confirms the config)."""
        self.client = self.upstream.client("tutor", handler=self.on_upstream_event)
        # What the API refuses of the transcription or turn detection steps down (tutor.realtime.fallback).
        created = await self.shape.open(self.client, self._tutor_session(initial=True), self.config.step_timeout)
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
                self.responses.reset()
                for utterance in self.transcript.conversation:
                    if not utterance.text:
                        continue  # a spoken answer whose words are not known: there is no text to replay
                    item = user_text_item if utterance.role == LEARNER else assistant_text_item
                    await self.responses.add_item(item(utterance.text))
            except (RealtimeError, TimeoutError, OSError) as exc:
                self.log.warning("upstream resume failed", extra={"error": str(exc)})
                await self.client.close()
                self.client = old
                return False
            self._upstream_ready = True
            self.resumes += 1
            try:
                while self._held_audio:  # what the learner said meanwhile, before anything else is said
                    await self.client.send_audio(self._held_audio.popleft())
            except RealtimeClosed:
                pass  # the new session closed at once: the watch loop sees it next
            conversation = self.transcript.conversation
            self.log.info("upstream session resumed", extra={"turns": len(conversation), "resumes": self.resumes})
            if not self._reply_complete:
                # The tutor's last reply was cut (or never came): e.g. only its preamble was said.
                self.responses.want("resume")
            else:
                await self.set_state(State.LISTENING)  # its question stands: the learner's turn
        return True

    async def stop(self) -> None:
        """The learner pressed Stop: assess what is known (not rated when too little is known)."""
        if self.assessment_id is not None or self._ended:
            return
        if self._start_task is not None and not self._start_task.done():
            # Still connecting: nothing was said. The start stops here (the tutor never greets).
            await cancel_and_wait(self._start_task)
            if self._session_row is not None and self.session_id is None:
                self.session_id = await self._session_row
                self.log.bind(session_id=self.session_id)
            if self.client is not None:
                await self.client.close()
            self.placement.finish_early("learner_stopped")
            if self.session_id is not None:
                await self._not_rated()
            await self._end("learner_stopped")
            return
        await self._end_placement("learner_stopped")

    async def close(self, reason: str = "learner_left") -> None:
        """The learner's socket is gone: cancel and await every task, keep what was learned."""
        self._closing = True
        self._accepting_audio = False
        await self.tasks.cancel_all()
        await self.discard_narrator()
        if self.client is not None:
            await self.client.close()
        if self.session_id is not None:
            try:
                await self._keep_undelivered(reason)
                await db(services.end_session)(self.session_id, reason)
            finally:
                await recovery.heartbeats.leave(self.session_id)
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
            await recovery.heartbeats.leave(self.session_id)
        await self.set_state(State.ENDED)
        if not self._closing:
            await self.discard_narrator()  # prepared for a handover that did not come (not rated)
            if self.client is not None:
                await self.client.close()
        self.log.info("tutor session ended", extra={"reason": reason})

    # --- learner input ----------------------------------------------------------------------------

    async def learner_audio(self, pcm: bytes) -> None:
        if not self._accepting_audio:
            return
        self.answers.audio(pcm)  # the answer's recording and fluency, whatever the upstream does
        if self._upstream_ready and self.client.is_open:
            try:
                await self.client.send_audio(pcm)
                return
            except RealtimeClosed:
                pass  # the upstream is closing: _watch_upstream resumes it (or ends the session)
        # Held while the upstream session is being resumed, and sent to the new one: a learner who
        # answers just as the old session expires is still heard (bounded; dropped if none comes).
        self._held_audio.append(pcm)

    async def answer_text(self, text: str) -> None:
        if self.session_id is None or self.client is None:
            raise ClientError("not_started", "The session is still starting; answer when the tutor asks.")
        if self.assessment_id is not None or self._ended:
            raise ClientError("placement_ended", "The placement has ended; this answer was not recorded.")
        await self._show_answer(self.answers.written(text, self.placement.current_level))
        async with self.responses.lock:  # not while a resumed session is being configured
            await self.responses.add_item(user_text_item(text))
        await self.responses.answer_written()

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
        if self.client is not None and self.client.is_open:
            self.responses.observe(event)  # first: the turn-taking state every decision below reads
        if await self.relay.handle(event):
            return
        handler = self._handlers.get(event.type)
        if handler is not None:
            await handler(event)

    async def on_response_created(self, event: Any) -> None:
        self.failures.on_response_created()
        await self._show_state()  # mostly from playback (_follow_playback), not from generation

    async def on_response_done(self, event: Any) -> None:
        if event.response.status == "completed" and self.client.tracker.spoke_after_calls(event.response.id):
            self._reply_complete = True
        self._tutor_spoke(event.response)
        self.silent.on_response_done(event.response)  # no audio: asked again once (tutor.runtime.contact)
        await self.failures.on_response_done(event)
        await self._show_state()

    def _tutor_spoke(self, response: Any) -> None:
        """A reply that spoke ended complete and went to the learner uncut: the tutor has taken its
        turn, so the learner's answer before it is complete. Judged at the reply's end, not at its first
        spoken item: a reply can open with a preamble before its record_probe call (gpt-realtime-2).
        A reply the learner talked over (barge-in, or a written answer) was silenced and does not end
        their answer; a tool call has no audio."""
        if self.assessment_id is not None or self.relay.muted or response.status != "completed":
            return
        tracker = self.client.tracker
        state = tracker.responses.get(response.id)
        spoken = [i for i in (state.item_ids if state else ()) if i in tracker.items and tracker.items[i].audio_bytes]
        if spoken and not any(self.relay.was_silenced(i) for i in spoken):
            self._close_answer()

    async def on_speech_started(self, event: Any) -> None:
        # Barge-in: the learner talks while the tutor is audible - also after generation finished (the
        # upstream generates faster than real time): the page is flushed and the item cut where the
        # learner stopped hearing it. An active response is cancelled by the server (interrupt_response).
        self.answers.speech_started()  # the answer's recording keeps all from here
        if self.assessment_id is None and self.learner.playback.audible() is not None:
            await self.responses.interrupt_playback()

    async def on_input_audio_buffer_committed(self, event: Any) -> None:
        if self.assessment_id is None:
            self.answers.committed(event.item_id, self.placement.current_level)

    async def on_input_transcription_completed(self, event: Any) -> None:
        await self._show_answer(self.answers.transcribed(event.item_id, event.transcript, self.placement.current_level))

    async def on_input_transcription_failed(self, event: Any) -> None:
        # The learner spoke, but no words are known: the answer shows as spoken, never with made-up text.
        # (Real shape: error type "server_error", message "Input transcription failed for item '<id>'."
        # -- openai/openai-realtime-console#46.)
        self.log.info(
            "learner speech not transcribed",
            extra={"item_id": event.item_id, "error_type": event.error.type, "code": event.error.code},
        )
        await self._show_answer(self.answers.transcribed(event.item_id, None, self.placement.current_level))

    async def on_function_call_arguments_done(self, event: Any) -> None:
        self._spawn(self.probes.handle(self.client, event.call_id, event.name, event.arguments), "probe")

    async def on_error(self, event: Any) -> None:
        error = event.error
        if error.code == "session_expired":
            return  # announced before the 1001 close; _watch_upstream resumes the session
        if await fatal_upstream_error(self, error):
            return  # the session ends (tutor.runtime.contact)
        self.log.warning(
            "upstream error", extra={"code": error.code, "error_message": error.message, "event_id": error.event_id}
        )
        await self.learner.send_event(wire.error("upstream_error", UNCLAIMED_ERROR_MESSAGE))  # its text: the log

    async def _follow_playback(self) -> None:
        """tutor_speaking while the learner hears the tutor, listening otherwise: from the page's
        playback reports, not from generation (which ends long before the learner has heard it all)."""
        while True:
            await self._show_state()
            await self.learner.playback.changed()

    async def _show_state(self) -> None:
        """tutor_speaking while the learner hears the tutor, or the tutor's turn goes on between a tool
        call and the reply that follows its output (a response active, or calls waiting for outputs)."""
        if self.assessment_id is None and self.state in (State.LISTENING, State.TUTOR_SPEAKING):
            client = self.client
            speaking = self.learner.playback.audible() is not None or (
                client is not None and (client.tracker.has_active_response or self.responses.calls_waiting)
            )
            await self.set_state(State.TUTOR_SPEAKING if speaking else State.LISTENING)

    # --- the assessment -----------------------------------------------------------------------------

    async def begin_assessment(self) -> None:
        """Persist the assessment first, then hand it to the delivery worker (idempotent).

        Without enough evidence (placement.has_evidence) there is no level to deliver: the session
        ends `not_rated`, and the learner is told why.
        """
        if self.assessment_id is not None:
            return
        async with self._rating:  # the answers already given are judged before the level is final
            pass
        if self.assessment_id is not None:
            return
        if not self.placement.has_evidence(self.config.min_rated_answers):
            await self._not_rated()
            await self._end(self.placement.end_reason or "learner_stopped")
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

    async def _upstream_failed(self, failure: UpstreamFailure) -> None:
        """Responses keep failing, or fail in a way retrying cannot help (quota, model access): placement
        ends with what is known, the learner is told why, the session records it."""
        if self.assessment_id is not None or self._ended:
            return
        self.log.warning("placement ended by upstream failures", extra={"reason": failure.end_reason})
        await self.learner.send_event(wire.error(failure.code, failure.message))
        await self._end_placement(failure.end_reason)

    async def _deliver(self) -> None:
        outcome = self.delivery_outcome = await self.delivery.run()
        self.log.info("handover finished", extra={"status": outcome.status, "speaker": outcome.speaker})
        await self._end(self.placement.end_reason or "ceiling")
        await self.tasks.cancel_all()  # time cap, upstream watch: the session has ended

    async def _not_rated(self) -> None:
        """Too little evidence for a level: the assessment is stored `not_rated` and the learner told so."""
        self.assessment_id = await db(services.create_unrated_assessment)(self.session_id, self.placement.partial)
        self.not_rated = True
        self.log.bind(assessment_id=self.assessment_id)
        self.log.info(
            "session not rated",
            extra={"rated_answers": self.placement.rated_answers, "end_reason": self.placement.end_reason},
        )
        self.relay.mute()  # the tutor says nothing more; the page shows why there is no level
        await self.learner.send_event(
            wire.assessment(self.assessment_id, None, {}, NOT_RATED_SUMMARY, "", "not_rated", self.placement.partial)
        )

    async def _keep_undelivered(self, reason: str) -> None:
        """On disconnect: an assessment that was not delivered is graded by the rules and kept; a
        session that ends here with too little evidence is kept as not rated."""
        if self.assessment_id is None and not self._ended:
            self.placement.finish_early("learner_left")
            if not self.placement.has_evidence(self.config.min_rated_answers):
                await self._not_rated()
                return
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
            feedback_language=self.config.feedback_language,
        )

    # --- timers and upstream health -------------------------------------------------------------------

    async def _time_cap(self) -> None:
        await asyncio.sleep(self.config.max_seconds)  # the session's time budget, not a settle wait
        if self.assessment_id is None:
            self.log.info("session time cap reached")
            await self._end_placement("time_cap")

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
            # the delivery falls back to text when the tutor is gone
            await self._end_placement("upstream_expired" if expired else "upstream_error")
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
            reasoning_effort=self.config.reasoning_effort if takes_reasoning(self.upstream.model) else None,
        )
        if not initial:
            # The voice is fixed once the tutor has spoken: a level update never mentions it.
            del session["audio"]["output"]["voice"]
        return self.shape.apply(session)

    async def _tutor_said(self, role: str, item_id: str, text: str) -> None:
        utterance = await self._record(role, text, item_id)
        if utterance is not None and role == TUTOR:
            self.answers.tutor_asked(self.placement.current_level, utterance.text)

    async def _record(self, role: str, text: str, item_id: str):
        """Append to the transcript and store the Turn row: one place for both."""
        utterance = self.transcript.add(role, text, item_id, self.placement.current_level)
        if utterance is not None:
            await db(services.record_turn)(self.session_id, role, utterance.text, item_id, utterance.level)
        return utterance

    # --- the learner's answers and their judgements ----------------------------------------------------

    async def _show_answer(self, answer: OpenAnswer) -> None:
        """An answer began or grew by a fragment: the learner's transcript and its Turn row follow."""
        self._reply_complete = False  # the learner spoke after the tutor's last reply
        async with self._answer_rows:
            fluency = None
            if answer is self.answers.current and answer.has_spoken:  # still open: its audio so far
                audio = self.answers.audio_so_far()
                fluency = await audio_work(audio, measure, audio)
            elif answer is not self.answers.current:  # closed: measured once, words from its transcript
                fluency = await audio_work(answer.audio, answer.fluency)
            measures = fluency.as_dict() if fluency else {}
            utterance = self.transcript.set_answer(answer.answer_id, answer.text, answer.level, answer.mode, measures)
            if utterance is None:
                return
            if answer.turn_id is None:
                answer.turn_id = await db(services.record_turn)(
                    self.session_id, LEARNER, utterance.text, answer.answer_id, answer.level, answer.mode, measures
                )
            else:
                await db(services.update_answer)(answer.turn_id, utterance.text, answer.mode, measures)
        spoken_ms = fluency.duration_ms if fluency is not None and not utterance.text else None
        await self.learner.send_event(
            wire.transcript(LEARNER, answer.answer_id, utterance.text, final=True, mode=answer.mode, spoken_ms=spoken_ms)
        )

    async def _judge_open_answer(self) -> None:
        """The tutor signalled (record_probe) that the answer is over: judge it before it speaks."""
        answer = self.answers.close()
        if answer is not None and answer.fragments:
            await self._judge(answer)

    def _close_answer(self) -> None:
        answer = self.answers.close()
        if answer is not None and answer.fragments:
            self._spawn(self._judge(answer), "rating")

    async def _end_placement(self, reason: str) -> None:
        """Placement ends early: the answer in progress is judged first, then the assessment begins."""
        answer = self.answers.close()
        if answer is not None and answer.fragments:
            await self._judge(answer, begin=False)
        async with self._rating:  # an answer being judged is judged first (else its record finds it ended)
            pass
        self.placement.finish_early(reason)
        await self.begin_assessment()

    async def _judge(self, answer: OpenAnswer, begin: bool = True) -> None:
        """Rate one answer, exactly once; placement follows the judgement."""
        async with self._rating:
            if self.placement.finished or self.assessment_id is not None:
                return
            try:
                async with asyncio.timeout(self.config.step_timeout):
                    await answer.transcribed.wait()  # its words, or that there are none
            except TimeoutError:
                self.log.info("answer judged without its transcription", extra={"answer_id": answer.answer_id})
            await audio_work(answer.audio, answer.fluency)  # measured once; kept by the answer
            judgement = await self.config.rater.rate(answer.for_rater(self.config.target_language))
            update = self.placement.record(judgement.level, judgement.outcome, judgement.evidence, judgement.rater)
            await self._store_answer(answer, judgement)
            self.transcript.judge(self.placement.probes[-1])  # beside the answer it judges, for the grader
            self.log.info(
                "answer judged",
                extra={"answer_id": answer.answer_id, "level": judgement.level, "outcome": judgement.outcome,
                       "rater": judgement.rater, "mode": judgement.mode, "current": update.current_level,
                       "tutor_outcome": answer.opinion.outcome if answer.opinion else None},
            )
            await self._send_level()
            if update.level_changed and not update.finished:
                await self._apply_level()
        if update.finished and begin:
            await self.begin_assessment()

    async def _store_answer(self, answer: OpenAnswer, judgement) -> None:
        """The answer's final text, fluency and recording, and the judgement beside the tutor's opinion."""
        fluency = answer.fluency()
        measures = fluency.as_dict() if fluency else {}
        utterance = self.transcript.set_answer(answer.answer_id, answer.text, answer.level, answer.mode, measures)
        new_turn = final = None
        if answer.turn_id is None and utterance is not None:
            new_turn = {"role": LEARNER, "text": utterance.text, "item_id": answer.answer_id, "level": answer.level,
                        "mode": answer.mode, "fluency": measures}
        elif answer.turn_id is not None and answer.has_spoken:  # a written answer's row is already final
            final = {"text": answer.text, "mode": answer.mode, "fluency": measures}
        span = answer.speech_span() if answer.has_spoken else b""  # found with its measures (`_judge`)
        answer.release_audio()
        answer.turn_id = await db(services.store_judged_answer)(
            self.session_id, answer.turn_id, judgement, answer.opinion, new_turn=new_turn, final=final, audio=span
        )

    async def _apply_level(self) -> None:
        """The tutor's instructions and speed follow the new level: the scheduler sends them between
        responses, before the next one starts (speed changes only between model turns)."""
        if self.client is None or not self.client.is_open or self.assessment_id is not None:
            return
        self.responses.update_session(self._tutor_session(initial=False))
        self.log.info("level changed", extra={"level": self.placement.current_level})

    async def _send_level(self) -> None:
        if self.placement.one_answer_from_end() and self.client is not None:
            # The summary voice gets ready now, an answer before placement can end: the level is then
            # said one round trip after the ceiling (DESIGN section 3). Closed on any end if unused.
            self.prepare_narrator(self.config.summary_voice)
        await self.learner.send_event(wire.level(self.placement.current_level, self.placement.ladder()))
        await self._announce()

    async def _announce(self) -> None:
        """A snapshot for the teachers' live view (tutor.live), built only if one may reach a teacher."""
        if self.session_id is None or not live.watching():
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
                assessment_status=outcome.status if outcome else "not_rated" if self.not_rated else "pending",
            )
        )

    # --- owned tasks ------------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine, name: str) -> asyncio.Task:
        task = self.tasks.spawn(self._guard(coro, name), name)
        # A task cancelled before its first step never starts `_guard`, so `coro` was never awaited:
        # closed here rather than left to the garbage collector's "never awaited" warning.
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
            # The upstream went away under this task; _watch_upstream resumes it or ends the session.
            self.log.info("session task stopped: upstream closed", extra={"task": name})
        except Exception as exc:
            if is_fatal_request_error(exc):
                return  # the session ends of it, told once (on_error, tutor.runtime.contact)
            self.log.exception("session task failed", extra={"task": name})
            if not self._closing:
                # The exception's text is in the log; the learner gets Parla's words.
                await self.learner.send_event(
                    wire.error("session_error", "Something went wrong on our side; please try again.")
                )
