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
from .deltas import split_text
from .events import IdFactory, Send
from .items import Item
from .persona import LearnerTurn, ScriptedTutor, parse_instructions

MIN_COMMIT_MS = 100  # the real API refuses to commit less (errors.commit_empty)


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
        transcript = self._transcribe(item, audio)
        self._tutor.learner_turn(LearnerTurn("audio", transcript or "", voiced_ms(audio, self._config.vad_threshold)))

    def _transcribe(self, item: Item, audio: bytes) -> str | None:
        """Input transcription, when configured: the simulated learner's sentence."""
        settings = self._config.transcription
        if not settings:
            return None
        context = parse_instructions(self._config.instructions)
        text = self._tutor.learner_utterance(settings.get("language") or context.language, context.level)
        for piece in split_text(text, max(1, len(text.split()) // 3)):
            self._send(
                "conversation.item.input_audio_transcription.delta", item_id=item.id, content_index=0, delta=piece
            )
        audio_tokens = max(1, round(pcm_ms(audio) / 100))
        text_tokens = max(1, len(text) // 4)
        usage = {
            "type": "tokens",
            "total_tokens": audio_tokens + text_tokens,
            "input_tokens": audio_tokens,
            "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
            "output_tokens": text_tokens,
        }
        self._send(
            "conversation.item.input_audio_transcription.completed",
            item_id=item.id,
            content_index=0,
            transcript=text,
            usage=usage,
        )
        item.content[0]["transcript"] = text
        return text
