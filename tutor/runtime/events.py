"""TutorEvents: the tutor session's upstream events, each to the part it concerns, and the turn state.

One dispatch table, handlers named after the event (`on_response_done`...). Every event goes first to
the response scheduler (the turn-taking state every decision reads), then to the speech relay (the
tutor's audio and transcript to the learner), then to its handler here. Handlers run in the client's
reader task: they never await a request to the upstream (that would wait for the reader itself);
work that does is spawned as an owned task.

The turn state the learner sees (`tutor_speaking` / `listening`) follows the page's playback reports
(`follow_playback`), not generation, which ends long before the learner has heard it all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from assessments.placement import Placement
from tutor.realtime import wire
from tutor.realtime.client import RealtimeClosed
from tutor.realtime.failures import UNCLAIMED_ERROR_MESSAGE
from tutor.realtime.logs import BoundLogger
from tutor.realtime.relay import LearnerPort, SpeechRelay
from tutor.realtime.wire import State
from tutor.runtime.answers import AnswerCollector, OpenAnswer
from tutor.runtime.connection import TutorConnection
from tutor.runtime.contact import FatalErrors, SilentReplies
from tutor.runtime.handover import TutorLink
from tutor.runtime.judge import AnswerJudge
from tutor.runtime.outcome import SessionOutcome
from tutor.runtime.phase import Phase, SessionPhase
from tutor.runtime.probes import ProbeHandler
from tutor.runtime.responses import ResponseScheduler
from tutor.runtime.retries import FailedResponses


class TutorEvents:
    def __init__(
        self,
        *,
        tutor: TutorLink,
        phase: SessionPhase,
        connection: TutorConnection,
        responses: ResponseScheduler,
        relay: SpeechRelay,
        failures: FailedResponses,
        probes: ProbeHandler,
        judge: AnswerJudge,
        answers: AnswerCollector,
        placement: Placement,
        learner: LearnerPort,
        outcome: SessionOutcome,
        spawn: Callable[[Coroutine, str], asyncio.Task],
        log: BoundLogger,
    ):
        self.tutor = tutor  # its state (what the learner is shown) changes through it
        self.phase = phase
        self.connection = connection
        self.responses = responses
        self.relay = relay
        self.failures = failures
        self.probes = probes
        self.judge = judge
        self.answers = answers
        self.placement = placement
        self.learner = learner
        self.spawn = spawn
        self.log = log
        # First contact with the real API (tutor.runtime.contact): a reply without audio is asked again
        # once; a fatal error (key, quota, model access) ends the session.
        self.silent = SilentReplies(
            phase=phase, connection=connection, responses=responses, learner=learner, spawn=spawn, log=log
        )
        self.fatal = FatalErrors(phase=phase, give_up=outcome.upstream_failed, ended=outcome.ended, spawn=spawn, log=log)
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

    async def handle(self, event: Any) -> None:
        """The reader task's handler: an exception in it ends the session, as in any task (the runtime's
        `_guard`)."""
        try:
            await self._dispatch(event)
        except RealtimeClosed:
            self.log.info("upstream event handler stopped: upstream closed", extra={"type": event.type})
        except Exception:
            self.log.exception("upstream event handler failed", extra={"type": event.type})
            if self.phase.now is not Phase.CLOSED:
                self.learner.session_failed()

    async def _dispatch(self, event: Any) -> None:
        if self.connection.is_open:
            self.responses.observe(event)  # first: the turn-taking state every decision below reads
        if await self.relay.handle(event):
            return
        handler = self._handlers.get(event.type)
        if handler is not None:
            await handler(event)

    async def on_response_created(self, event: Any) -> None:
        self.failures.on_response_created()
        await self.show_state()  # mostly from playback (follow_playback), not from generation

    async def on_response_done(self, event: Any) -> None:
        self._tutor_spoke(event.response)
        self.silent.on_response_done(event.response)  # no audio: asked again once
        await self.failures.on_response_done(event)
        await self.show_state()

    def _tutor_spoke(self, response: Any) -> None:
        """A reply that spoke ended complete and went to the learner uncut: the tutor has taken its
        turn, so the learner's answer before it is complete. Judged at the reply's end, not at its first
        spoken item: a reply can open with a preamble before its record_probe call (gpt-realtime-2).
        A reply the learner talked over (barge-in, or a written answer) was silenced and does not end
        their answer; a tool call has no audio."""
        if not self.phase.now.placing or self.relay.muted or response.status != "completed":
            return
        tracker = self.connection.tracker
        state = tracker.responses.get(response.id)
        spoken = [i for i in (state.item_ids if state else ()) if i in tracker.items and tracker.items[i].audio_bytes]
        if spoken and not any(self.relay.was_silenced(i) for i in spoken):
            self.judge.close_soon()

    async def on_speech_started(self, event: Any) -> None:
        # Barge-in: the learner talks while the tutor is audible - also after generation finished (the
        # upstream generates faster than real time): the page is flushed and the item cut where the
        # learner stopped hearing it. An active response is cancelled by the server (interrupt_response).
        self.answers.speech_started()  # the answer's recording keeps all from here
        if self.phase.now.placing and self.learner.playback.audible() is not None:
            await self.responses.interrupt_playback()

    async def on_input_audio_buffer_committed(self, event: Any) -> None:
        if self.phase.now.placing:
            self.answers.committed(event.item_id, self.placement.current_level)

    async def on_input_transcription_completed(self, event: Any) -> None:
        await self._show(self.answers.transcribed(event.item_id, event.transcript, self.placement.current_level))

    async def on_input_transcription_failed(self, event: Any) -> None:
        # The learner spoke, but no words are known: the answer shows as spoken, never with made-up text.
        # (Real shape: error type "server_error", message "Input transcription failed for item '<id>'."
        # -- openai/openai-realtime-console#46.)
        self.log.info(
            "learner speech not transcribed",
            extra={"item_id": event.item_id, "error_type": event.error.type, "code": event.error.code},
        )
        await self._show(self.answers.transcribed(event.item_id, None, self.placement.current_level))

    async def on_function_call_arguments_done(self, event: Any) -> None:
        self.spawn(self.probes.handle(self.connection.current, event.call_id, event.name, event.arguments), "probe")

    async def on_error(self, event: Any) -> None:
        error = event.error
        if error.code == "session_expired":
            return  # announced before the 1001 close; the connection's watch resumes the session
        if self.fatal.on_error(error):
            return  # the session ends of it (the learner told once, the cause logged once)
        self.log.warning(
            "upstream error", extra={"code": error.code, "error_message": error.message, "event_id": error.event_id}
        )
        await self.learner.send_event(wire.error("upstream_error", UNCLAIMED_ERROR_MESSAGE))  # its text: the log

    async def follow_playback(self) -> None:
        """tutor_speaking while the learner hears the tutor, listening otherwise: from the page's
        playback reports, not from generation (which ends long before the learner has heard it all)."""
        while True:
            await self.show_state()
            await self.learner.playback.changed()

    async def show_state(self) -> None:
        """tutor_speaking while the learner hears the tutor, or the tutor's turn goes on between a tool
        call and the reply that follows its output (a response active, or calls waiting for outputs)."""
        if self.phase.now.placing and self.tutor.state in (State.LISTENING, State.TUTOR_SPEAKING):
            speaking = self.learner.playback.audible() is not None or (
                self.connection.current is not None
                and (self.connection.tracker.has_active_response or self.responses.calls_waiting)
            )
            await self.tutor.set_state(State.TUTOR_SPEAKING if speaking else State.LISTENING)

    async def _show(self, answer: OpenAnswer) -> None:
        self.responses.learner_answered()
        await self.judge.show(answer)
