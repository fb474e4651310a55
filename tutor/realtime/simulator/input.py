"""The input audio buffer: appended audio, server VAD over it, commit into a user item, transcription.

What a turn boundary does to responses (barge-in, the VAD's own response) is the session's call.
"""

from __future__ import annotations

import base64
import binascii

from openai.types.realtime import InputAudioBufferAppendEvent

from tutor.realtime.audio import pcm_ms

from . import errors
from .audio import EnergyVad, VadEvent, voiced_ms
from .config import SERVER_VAD_DEFAULTS, SessionConfig
from .conversation import Conversation
from .events import IdFactory, Send
from .items import Item
from .persona import LearnerTurn, ScriptedTutor

MIN_COMMIT_MS = 100  # the real API refuses to commit less (errors.commit_empty)

# Semantic VAD ends the turn when a model judges the speech finished, after at most 8 s (low), 4 s
# (medium, auto) or 2 s (high) of silence (openai-python realtime_audio_input_turn_detection.py,
# `eagerness`). The simulator cannot judge meaning: it ends the turn after a fixed silence per eagerness,
# shorter than those maximums (a real learner in demo mode should not wait 8 s for every reply).
SEMANTIC_SILENCE_MS = {"low": 2000, "medium": 500, "auto": 500, "high": 300}


class InputAudio:
    """The learner's audio on its way into the conversation."""

    def __init__(
        self,
        *,
        send: Send,
        ids: IdFactory,
        config: SessionConfig,
        conversation: Conversation,
        tutor: ScriptedTutor,
    ) -> None:
        self.buffer = bytearray()
        self.pending_item_id: str | None = None  # announced by speech_started
        self.vad = EnergyVad()
        self._send = send
        self._ids = ids
        self._config = config
        self._conversation = conversation
        self._tutor = tutor
        self.configure_vad()

    def configure_vad(self) -> None:
        """Follow the session's turn detection (after every `session.update`)."""
        detection = self._config.turn_detection
        if detection is None:
            self.vad.reset()
            return
        self.vad.threshold = detection.get("threshold", SERVER_VAD_DEFAULTS["threshold"])
        self.vad.prefix_padding_ms = detection.get("prefix_padding_ms", SERVER_VAD_DEFAULTS["prefix_padding_ms"])
        if detection.get("type") == "semantic_vad":
            self.vad.silence_duration_ms = SEMANTIC_SILENCE_MS[detection.get("eagerness") or "auto"]
        else:
            self.vad.silence_duration_ms = detection.get(
                "silence_duration_ms", SERVER_VAD_DEFAULTS["silence_duration_ms"]
            )

    # --- client events -------------------------------------------------------------------

    def append(self, event: InputAudioBufferAppendEvent) -> list[VadEvent]:
        """Buffer the audio; the turn boundaries the VAD finds in it, for the caller to act on in order."""
        try:
            pcm = base64.b64decode(event.audio, validate=True)
        except (binascii.Error, ValueError):
            raise errors.invalid_parameter_value("audio", "expected base64-encoded audio") from None
        return self.append_pcm(pcm)

    def append_pcm(self, pcm: bytes) -> list[VadEvent]:
        """The decoded audio of an append (bench/load_sim.py reads its stamps here, without decoding twice)."""
        self.buffer.extend(pcm)
        if self._config.turn_detection is None:
            self.vad.position_ms += round(pcm_ms(pcm))
            return []
        return self.vad.feed(pcm)

    def commit(self) -> None:
        buffered = pcm_ms(self.buffer)
        if buffered < MIN_COMMIT_MS:
            raise errors.commit_empty(buffered)
        self._commit()
        self.vad.reset()

    def clear(self) -> None:
        self.buffer.clear()
        self.pending_item_id = None
        self.vad.reset()
        self._send("input_audio_buffer.cleared")

    # --- turn boundaries found by the VAD --------------------------------------------------

    def speech_started(self, audio_start_ms: int) -> None:
        self.pending_item_id = self._ids.new("item")
        self._send(
            "input_audio_buffer.speech_started", audio_start_ms=audio_start_ms, item_id=self.pending_item_id
        )

    def speech_stopped(self, audio_end_ms: int) -> None:
        """Report the end of speech and commit the buffer."""
        item_id = self.pending_item_id or self._ids.new("item")
        self.pending_item_id = item_id
        self._send("input_audio_buffer.speech_stopped", audio_end_ms=audio_end_ms, item_id=item_id)
        self._commit()

    # --- commit and transcription ------------------------------------------------------------

    def _commit(self) -> None:
        audio = bytes(self.buffer)
        self.buffer.clear()
        item_id = self.pending_item_id or self._ids.new("item")
        self.pending_item_id = None
        item = Item(item_id, "message", role="user", content=[{"type": "input_audio", "transcript": None}])
        self._send(
            "input_audio_buffer.committed", previous_item_id=self._conversation.last_item_id(), item_id=item_id
        )
        self._conversation.insert(item)
        self._conversation.item_done(item)
        self._transcribe(item)
        self._tutor.learner_turn(LearnerTurn("audio", "", voiced_ms(audio, self._config.vad_threshold)))

    def _transcribe(self, item: Item) -> None:
        """Input transcription, when configured. The simulator has no speech recognizer, so it never
        claims to know what the learner said: every transcription fails, in the real API's shape for a
        failed one (openai/openai-realtime-console#46: type "server_error", code null, this message).
        The conversation item keeps `transcript: null`, as the real one does when transcription fails."""
        if not self._config.transcription:
            return
        self._send(
            "conversation.item.input_audio_transcription.failed",
            item_id=item.id,
            content_index=0,
            error={
                "type": "server_error",
                "code": None,
                "message": f"Input transcription failed for item '{item.id}'.",
                "param": None,
            },
        )
