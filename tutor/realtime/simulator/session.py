"""One simulated Realtime session: its state, and each client event dispatched to the part that owns it.

The parts, one concern each: `config` (the session configuration), `conversation` (items),
`input` (input audio buffer, VAD, commit, transcription), `responses` (creation, streaming, cancel).
No sockets here. The connection (server.py) feeds client frames in and passes an `emit`
callable that sends one server event; `emit` is synchronous (it enqueues), so each handler
and each step of a response changes state and emits its events without interleaving.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from typing import Any

from openai.types.realtime import (
    ConversationItemCreateEvent,
    ConversationItemDeleteEvent,
    ConversationItemRetrieveEvent,
    ConversationItemTruncateEvent,
    InputAudioBufferAppendEvent,
    InputAudioBufferClearEvent,
    InputAudioBufferCommitEvent,
    ResponseCancelEvent,
    ResponseCreateEvent,
    SessionUpdateEvent,
)
from pydantic import BaseModel

from . import errors
from .config import SessionConfig, requested_speed, requested_voice
from .conversation import Conversation, learner_turn
from .errors import RealtimeAPIError
from .events import IdFactory, client_event_id, parse_client_event
from .input import InputAudio
from .knobs import SimulatorKnobs
from .persona import ScriptedTutor, resolve_probe_shape
from .responses import Responses

logger = logging.getLogger("tutor.realtime.simulator")

Emit = Callable[[dict[str, Any]], None]


class RealtimeSession:
    """The protocol state machine of one simulated connection."""

    def __init__(
        self,
        *,
        knobs: SimulatorKnobs,
        emit: Emit,
        ids: IdFactory,
        model: str,
        expires_at: int,
    ) -> None:
        self.knobs = knobs
        self.emit = emit
        self.ids = ids
        self.id = ids.new("sess")
        self.conversation_id = ids.new("conv")
        self.config = SessionConfig(session_id=self.id, model=model, expires_at=expires_at)
        self.tutor = ScriptedTutor(
            rng=random.Random(knobs.seed),
            true_level=knobs.true_level,
            probe_shape=resolve_probe_shape(knobs.probe_shape, model),
            skip_probe_every=knobs.skip_probe_every,
            repeat_probe_every=knobs.repeat_probe_every,
            wrong_language_every=knobs.wrong_language_every,
        )
        self.conversation = Conversation(send=self._emit, ids=ids, session_id=self.id)
        self.input = InputAudio(
            send=self._emit, ids=ids, config=self.config, conversation=self.conversation, tutor=self.tutor
        )
        self.responses = Responses(
            send=self._emit,
            ids=ids,
            knobs=knobs,
            config=self.config,
            conversation=self.conversation,
            conversation_id=self.conversation_id,
            tutor=self.tutor,
            session_id=self.id,
        )
        self._handlers: dict[str, Callable[[Any], None]] = {
            "session.update": self.on_session_update,
            "input_audio_buffer.append": self.on_input_audio_buffer_append,
            "input_audio_buffer.commit": self.on_input_audio_buffer_commit,
            "input_audio_buffer.clear": self.on_input_audio_buffer_clear,
            "conversation.item.create": self.on_conversation_item_create,
            "conversation.item.truncate": self.on_conversation_item_truncate,
            "conversation.item.delete": self.on_conversation_item_delete,
            "conversation.item.retrieve": self.on_conversation_item_retrieve,
            "response.create": self.on_response_create,
            "response.cancel": self.on_response_cancel,
        }

    # --- entry points used by the connection --------------------------------------------

    def start(self) -> None:
        """Send `session.created`, the first event of every connection."""
        self._emit("session.created", session=self.config.to_api())

    def handle_text(self, text: str) -> None:
        """Parse and apply one client text frame; client mistakes become `error` events."""
        try:
            parsed = parse_client_event(text)
        except RealtimeAPIError as err:
            self.send_error(err, _event_id_of(text))
            return
        event: BaseModel = parsed.model
        try:
            self._handlers[event.type](event)  # type: ignore[attr-defined]
        except RealtimeAPIError as err:
            self.send_error(err, event.event_id)  # type: ignore[attr-defined]

    def handle_binary(self) -> None:
        self.send_error(errors.binary_frame(), None)

    def send_error(self, err: RealtimeAPIError, client_event_id: str | None) -> None:
        logger.info(
            "client event rejected",
            extra={"session_id": self.id, "code": err.code, "client_event_id": client_event_id},
        )
        # Knob error_event_ids=False: errors that do not name the client event that caused them.
        self._emit("error", error=err.as_error(client_event_id if self.knobs.error_event_ids else None))

    async def aclose(self) -> None:
        """Cancel and await every response task (called when the connection ends)."""
        await self.responses.aclose()

    # --- session ---------------------------------------------------------------------------

    def on_session_update(self, event: SessionUpdateEvent) -> None:
        update = event.session
        if update.type != "realtime":
            raise errors.transcription_session_unsupported()
        self._check_transcription(update)
        self.responses.check_voice(requested_voice(update.audio))  # else the whole update is rejected
        self.responses.check_speed(requested_speed(update.audio))  # only between responses
        self.config.update(update)
        self.input.configure_vad()
        logger.info("session updated", extra={"session_id": self.id, "voice": self.config.voice})
        self._emit("session.updated", session=self.config.to_api())

    def _check_transcription(self, update: Any) -> None:
        """Knob reject_transcription: a transcription model refused as the API refuses a live one with
        turn detection on; the whole update is rejected (nothing of it applies)."""
        rejected = {name.strip() for name in self.knobs.reject_transcription.split(",") if name.strip()}
        transcription = getattr(getattr(getattr(update, "audio", None), "input", None), "transcription", None)
        model = getattr(transcription, "model", None)
        if rejected and model and ("*" in rejected or model in rejected):
            raise errors.transcription_rejected()

    # --- input audio buffer and turn detection ----------------------------------------------

    def on_input_audio_buffer_append(self, event: InputAudioBufferAppendEvent) -> None:
        for vad_event in self.input.append(event):
            if vad_event.kind == "speech_started":
                self._on_speech_started(vad_event.audio_ms)
            else:
                self._on_speech_stopped(vad_event.audio_ms)

    def _on_speech_started(self, audio_start_ms: int) -> None:
        self.input.speech_started(audio_start_ms)
        detection = self.config.turn_detection or {}
        if detection.get("interrupt_response", True) and self.responses.active is not None:
            self.responses.finish(self.responses.active, "cancelled", reason="turn_detected")  # barge-in

    def _on_speech_stopped(self, audio_end_ms: int) -> None:
        self.input.speech_stopped(audio_end_ms)
        if not (self.config.turn_detection or {}).get("create_response", True):
            return
        if self.responses.active is not None:
            logger.info("vad response skipped", extra={"session_id": self.id, "active": self.responses.active.id})
            return
        self.responses.create(None, by_vad=True)

    def on_input_audio_buffer_commit(self, event: InputAudioBufferCommitEvent) -> None:
        self.input.commit()

    def on_input_audio_buffer_clear(self, event: InputAudioBufferClearEvent) -> None:
        self.input.clear()

    # --- conversation items ----------------------------------------------------------------

    def on_conversation_item_create(self, event: ConversationItemCreateEvent) -> None:
        item = self.conversation.create(event)
        if item.type == "function_call_output" and item.call_id:
            self.tutor.function_output(item.call_id)
        elif item.type == "function_call":
            self.tutor.call_replayed()  # a replayed call: the answers before it were recorded
        elif item.type == "message" and item.role == "user":
            self.tutor.learner_turn(learner_turn(event.item))
        elif item.type == "message" and item.role == "assistant":
            self.tutor.assistant_turn()  # a replayed reply: what came before it was answered

    def on_conversation_item_truncate(self, event: ConversationItemTruncateEvent) -> None:
        self.conversation.truncate(event)

    def on_conversation_item_delete(self, event: ConversationItemDeleteEvent) -> None:
        self.conversation.delete(event)

    def on_conversation_item_retrieve(self, event: ConversationItemRetrieveEvent) -> None:
        self.conversation.retrieve(event)

    # --- responses --------------------------------------------------------------------------

    def on_response_create(self, event: ResponseCreateEvent) -> None:
        self.responses.create(event.response)

    def on_response_cancel(self, event: ResponseCancelEvent) -> None:
        self.responses.cancel(event.response_id)

    def _emit(self, event_type: str, **fields: Any) -> None:
        self.emit({"type": event_type, **fields})


def _event_id_of(text: str) -> str | None:
    try:
        return client_event_id(json.loads(text))
    except ValueError:
        return None
