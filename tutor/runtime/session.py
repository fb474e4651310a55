"""TutorSessionRuntime: one learner's live session, between the consumer and the upstream.

It owns everything a session runs: the tutor's RealtimeClient (whose reader task is the upstream read
loop), the placement ladder, the time cap, probe follow-ups and the AssessmentDelivery worker. Every task
it starts is tracked and, in `close()`, cancelled and awaited: after a session ends none of its tasks
remains. The consumer stays thin: it validates browser frames and calls the methods here.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from assessments import services
from tutor.runtime.delivery import AssessmentDelivery, DeliveryOutcome, HandoverConfig, TutorLink
from assessments.grading import Grader, GradeInput, get_grader, grade_by_rules
from tutor.runtime.store import DjangoAssessmentStore
from tutor import live, persona, recovery
from tutor.realtime.exceptions import ClientError
from assessments.placement import Placement, PlacementFinished
from tutor.realtime.client import RealtimeClient, RealtimeClosed, RealtimeError
from tutor.realtime.relay import LearnerPort, SpeechRelay
from tutor.realtime.tasks import cancel_and_wait
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
        self.session_id: int | None = None
        self.assessment_id: int | None = None
        self.state = "ready"
        self.client: RealtimeClient | None = None
        self.relay: SpeechRelay | None = None
        self.history: list[tuple[str, str]] = []  # (learner|tutor, text): replayed after an expiry
        self.resumes = 0
        self.delivery: AssessmentDelivery | None = None
        self.delivery_outcome: DeliveryOutcome | None = None
        self._accepting_audio = False
        self._upstream_ready = False  # configured (session.updated) and, after a resume, replayed
        self._closing = False
        self._ended = False
        self._tasks: set[asyncio.Task] = set()
        self._response_lock = asyncio.Lock()
        self._handlers = {
            "response.created": self.on_response_created,
            "response.done": self.on_response_done,
            "input_audio_buffer.speech_started": self.on_speech_started,
            "conversation.item.input_audio_transcription.completed": self.on_input_transcription_completed,
            "response.function_call_arguments.done": self.on_function_call_arguments_done,
            "error": self.on_error,
        }

    @property
    def _log(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "learner_id": self.learner_id}

    # --- lifecycle (called by the consumer) ------------------------------------------------------

    def launch(self) -> None:
        """Start the session in an owned task: the consumer's receive loop is never held up."""
        if self.session_id is not None or self._tasks:
            raise ClientError("already_started", "The session has already started.")
        self._spawn(self._start(), "start")

    async def _start(self) -> None:
        await self.set_state("connecting")
        try:
            self.upstream = self.upstream or await resolve_upstream()
            self.session_id = await db(services.start_session)(
                self.learner_id,
                upstream=self.upstream.kind,
                model=self.upstream.model,
                target_language=self.config.target_language,
            )
            self._spawn(recovery.keep_alive(self.session_id), "heartbeat")  # other processes leave it alone
            self.relay = SpeechRelay(
                self.learner, role="tutor", voice=lambda: self.client.tracker.voice, on_transcript=self._tutor_said
            )
            await self._connect_tutor()
        except (RealtimeError, TimeoutError, OSError) as exc:
            logger.warning("upstream unavailable", extra={**self._log, "error": str(exc)})
            await self.learner.send_event(
                {"type": "error", "code": "upstream_unavailable", "message": "The tutor could not be reached. Please try again."}
            )
            await self._end("upstream_error")
            return
        logger.info("tutor session started", extra={**self._log, "upstream": self.upstream.kind})
        self._spawn(self._watch_upstream(), "watch-upstream")
        self._spawn(self._time_cap(), "time-cap")
        await self._send_level()
        self._upstream_ready = True
        self._accepting_audio = True
        await self.set_state("listening")
        await self._create_response()  # the tutor greets and asks the first question

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
        async with self._response_lock:
            self._upstream_ready = False
            try:
                await self._connect_tutor()
                for role, text in self.history:
                    await self.client.send(
                        {
                            "type": "conversation.item.create",
                            "item": {
                                "type": "message",
                                "role": "user" if role == "learner" else "assistant",
                                "content": [{"type": "input_text" if role == "learner" else "output_text", "text": text}],
                            },
                        }
                    )
            except (RealtimeError, TimeoutError, OSError) as exc:
                logger.warning("upstream resume failed", extra={**self._log, "error": str(exc)})
                await self.client.close()
                self.client = old
                return False
            self._upstream_ready = True
            self.resumes += 1
            logger.info(
                "upstream session resumed", extra={**self._log, "turns": len(self.history), "resumes": self.resumes}
            )
            await self._respond()
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
        current = asyncio.current_task()
        await cancel_and_wait(*[t for t in self._tasks if t is not current])
        if self.client is not None:
            await self.client.close()
        if self.session_id is not None:
            await self._keep_undelivered(reason)
            await db(services.end_session)(self.session_id, reason)
            if self.state != "ended":
                self.state = "ended"
                await self._announce()  # teachers see sessions that end by the learner leaving, too
        logger.info("tutor session closed", extra={**self._log, "reason": reason})

    # --- learner input ----------------------------------------------------------------------------

    async def learner_audio(self, pcm: bytes) -> None:
        if self._accepting_audio and self._upstream_ready and self.client.is_open:
            await self.client.send_audio(pcm)

    async def answer_text(self, text: str) -> None:
        if self.session_id is None or self.client is None:
            raise ClientError("not_started", "The session is still starting; answer when the tutor asks.")
        await self._learner_said(text, item_id="")  # kept even when it comes too late for the tutor
        if not self._accepting_audio:
            return  # the assessment has begun (or the session ended): the tutor no longer takes answers
        async with self._response_lock:  # not while a resumed session is being configured
            await self.client.send(
                {
                    "type": "conversation.item.create",
                    "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
                }
            )
        await self._create_response(interrupt=True)

    # --- TutorLink (used by the handover) -------------------------------------------------------------

    def stop_learner_audio(self) -> None:
        self._accepting_audio = False

    async def open_narrator(self, voice: str):
        return await open_narrator(self.upstream, voice, self.learner, self.config.step_timeout, self._tutor_said)

    # --- upstream events (dispatched from the client's reader task: never await a request here) -----

    async def on_upstream_event(self, event: Any) -> None:
        if await self.relay.handle(event):
            return
        handler = self._handlers.get(event.type)
        if handler is not None:
            await handler(event)

    async def on_response_created(self, event: Any) -> None:
        if self.assessment_id is None:
            await self.set_state("tutor_speaking")

    async def on_response_done(self, event: Any) -> None:
        if self.assessment_id is None and not self.client.tracker.has_active_response:
            await self.set_state("listening")

    async def on_speech_started(self, event: Any) -> None:
        # Barge-in: the server cancels the response itself (interrupt_response).
        if self.relay.speaking_item and self.assessment_id is None:
            await self._interrupt_playback()

    async def on_input_transcription_completed(self, event: Any) -> None:
        await self._learner_said(event.transcript, item_id=event.item_id)

    async def on_function_call_arguments_done(self, event: Any) -> None:
        self._spawn(self._probe(event.call_id, event.name, event.arguments), "probe")

    async def on_error(self, event: Any) -> None:
        error = event.error
        if error.code == "session_expired":
            return  # announced before the 1001 close; _watch_upstream resumes the session
        logger.warning(
            "upstream error", extra={**self._log, "code": error.code, "error_message": error.message, "event_id": error.event_id}
        )
        await self.learner.send_event({"type": "error", "code": "upstream_error", "message": error.message})

    # --- placement ----------------------------------------------------------------------------------

    async def _probe(self, call_id: str, name: str, arguments: str) -> None:
        origin = self.client  # the upstream session that called the tool
        update = None
        try:
            if name != "record_probe":
                raise ValueError(f"unknown tool {name!r}")
            args = json.loads(arguments)
            update = self.placement.record(args["level"], args["outcome"], args.get("evidence", ""))
        except (ValueError, KeyError, TypeError, PlacementFinished) as exc:
            logger.warning("probe rejected", extra={**self._log, "call_id": call_id, "error": str(exc)})
            output = {"ok": False, "error": str(exc)}
        else:
            probe = self.placement.probes[-1]
            await db(services.record_probe)(self.session_id, probe.level, probe.outcome, probe.evidence, call_id)
            logger.info(
                "probe recorded",
                extra={**self._log, "level": probe.level, "outcome": probe.outcome, "current": update.current_level},
            )
            await self._send_level()
            if update.finished:
                await self.begin_assessment()
                return
            output = {"ok": True, "current_level": update.current_level}
        async with self._response_lock:
            if origin is not self.client or not origin.is_open:
                return  # that session expired; the resumed one goes on from the replayed conversation
            if update is not None and update.level_changed:
                await origin.request(
                    {"type": "session.update", "session": self._tutor_session(initial=False)},
                    expect="session.updated",
                    timeout=self.config.step_timeout,
                )
                logger.info("level changed", extra={**self._log, "level": update.current_level})
            await self._function_output(call_id, output)
            await self._respond()

    async def begin_assessment(self) -> None:
        """Persist the assessment first, then hand it to the delivery worker (idempotent)."""
        if self.assessment_id is not None:
            return
        self.assessment_id = await db(services.create_assessment)(
            self.session_id, self.placement.rating, self.placement.partial
        )
        logger.info(
            "assessment created",
            extra={**self._log, "assessment_id": self.assessment_id, "level": self.placement.rating},
        )
        await self.set_state("assessing")
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
        logger.info("handover finished", extra={**self._log, "status": outcome.status, "speaker": outcome.speaker})
        await self._end(self.placement.end_reason or "ceiling")

    # --- timers and upstream health -------------------------------------------------------------------

    async def _time_cap(self) -> None:
        await asyncio.sleep(self.config.max_seconds)  # the session's time budget, not a settle wait
        if self.assessment_id is None:
            logger.info("session time cap reached", extra=self._log)
            self.placement.finish_early("time_cap")
            await self.begin_assessment()

    async def _watch_upstream(self) -> None:
        while True:
            await self.client.closed.wait()
            if self._closing or self._ended:
                return
            expired = self.client.close_code == EXPIRED_CLOSE_CODE
            logger.warning(
                "upstream session ended",
                extra={**self._log, "code": self.client.close_code, "reason": self.client.close_reason},
            )
            if self.assessment_id is not None:
                return  # the handover has its own timeouts and falls back to text
            if expired and self.resumes < MAX_RESUMES and await self._resume():
                continue
            self.placement.finish_early("upstream_expired" if expired else "upstream_error")
            await self.begin_assessment()  # the delivery falls back to text when the tutor is gone
            return

    # --- helpers ----------------------------------------------------------------------------------------

    async def _create_response(self, interrupt: bool = False) -> None:
        """response.create once no response is active (one at a time, like the API demands)."""
        async with self._response_lock:
            await self._respond(interrupt)

    async def _respond(self, interrupt: bool = False) -> None:
        """The body of `_create_response`; the caller holds `_response_lock`."""
        if self.assessment_id is not None or not self.client.is_open:
            return
        active = self.client.tracker.active_response_id
        if active is not None:
            if interrupt:  # a written answer cuts the tutor off, like speaking over it does
                await self._interrupt_playback()
                await self.client.cancel_response(active, self.config.step_timeout)
            else:
                await self.client.wait_for(
                    lambda e: e.type == "response.done" and e.response.id == active, self.config.step_timeout * 6
                )
        await self.client.send({"type": "response.create"})

    async def _function_output(self, call_id: str, output: dict) -> None:
        await self.client.send(
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": call_id, "output": json.dumps(output)},
            }
        )

    async def _interrupt_playback(self) -> None:
        """The learner cut the tutor off: the browser drops what it has not played yet at once, and
        the item is cut upstream where the learner stopped hearing it (so the model knows)."""
        self.relay.silence_current()
        flushed = await self.learner.request_flush()
        self._spawn(self._truncate_when_flushed(flushed), "truncate")

    async def _truncate_when_flushed(self, flushed: asyncio.Future) -> None:
        async with asyncio.timeout(self.config.step_timeout):
            position = await flushed
            item = self.client.tracker.item(position.item_id)
            if item is not None and self.client.tracker.responses[item.response_id].active:
                # truncate once its response has ended (cancelled by VAD or by us)
                await self.client.wait_for(
                    lambda e: e.type == "response.done" and e.response.id == item.response_id, self.config.step_timeout
                )
        await self.client.truncate_played(position.item_id, position.played_ms, self.config.step_timeout)

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

    def _grade_input(self) -> GradeInput:
        return GradeInput.from_placement(
            self.placement,
            target_language=self.config.target_language,
            native_language=self.config.native_language,
            learner_turns=[text for role, text in self.history if role == "learner"],
            tutor_turns=[text for role, text in self.history if role == "tutor"],
        )

    async def _learner_said(self, text: str, item_id: str) -> None:
        text = (text or "").strip()
        if not text:
            return
        self.history.append(("learner", text))
        await self.learner.send_event({"type": "transcript", "role": "learner", "item_id": item_id, "text": text, "final": True})
        await db(services.record_turn)(self.session_id, "learner", text, item_id, self.placement.current_level)

    async def _tutor_said(self, role: str, item_id: str, text: str) -> None:
        if text.strip():
            if role == "tutor":
                self.history.append(("tutor", text))
            await db(services.record_turn)(self.session_id, role, text, item_id, self.placement.current_level)

    async def _send_level(self) -> None:
        await self.learner.send_event(
            {"type": "level", "level": self.placement.current_level, "ladder": self.placement.ladder()}
        )
        await self._announce()

    async def set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            await self._announce()  # first: the learner's reaction (e.g. leaving) may cancel this task
            await self.learner.send_event({"type": "state", "state": state})

    async def _announce(self) -> None:
        """A snapshot for the teachers' live view (tutor.live)."""
        if self.session_id is None:
            return
        outcome = self.delivery_outcome
        await live.announce(
            {
                "session_id": self.session_id,
                "learner": self.learner_name,
                "language": self.config.target_language,
                "state": self.state,
                "level": self.placement.current_level,
                "ladder": self.placement.ladder(),
                "probes": len(self.placement.probes),
                "assessment": None
                if self.assessment_id is None
                else {
                    "id": self.assessment_id,
                    "level": outcome.result.level if outcome else self.placement.rating,
                    "status": outcome.status if outcome else "pending",
                    "partial": self.placement.partial,
                },
            }
        )

    async def _end(self, reason: str) -> None:
        if self._ended:
            return
        self._ended = True
        self._accepting_audio = False
        if self.session_id is not None:
            await db(services.end_session)(self.session_id, reason)
        await self.set_state("ended")
        if self.client is not None and not self._closing:
            await self.client.close()
        logger.info("tutor session ended", extra={**self._log, "reason": reason})

    async def _keep_undelivered(self, reason: str) -> None:
        """On disconnect: an assessment that was not delivered is graded by the rules and kept."""
        if self.assessment_id is None and self.placement.probes and not self._ended:
            self.placement.finish_early("learner_left")
            self.assessment_id = await db(services.create_assessment)(
                self.session_id, self.placement.rating, self.placement.partial
            )
        if self.assessment_id is not None:
            kept = await db(services.keep_undelivered)(
                self.assessment_id, grade_by_rules(self._grade_input()), f"learner disconnected ({reason})"
            )
            if kept:
                logger.info("undelivered assessment kept", extra={**self._log, "assessment_id": self.assessment_id})

    def _spawn(self, coro: Coroutine, name: str) -> asyncio.Task:
        task = asyncio.create_task(self._guard(coro, name), name=f"{name}-{id(self):x}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
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
            logger.info("session task stopped: upstream closed", extra={**self._log, "task": name})
        except Exception as exc:
            logger.exception("session task failed", extra={**self._log, "task": name})
            if not self._closing:
                await self.learner.send_event(
                    {"type": "error", "code": "session_error", "message": f"Something went wrong ({name}): {exc}"}
                )
