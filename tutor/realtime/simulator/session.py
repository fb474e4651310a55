"""One simulated Realtime session: conversation, responses, input buffer, VAD and the rules.

No sockets here. The connection (server.py) feeds client frames in and passes an `emit`
callable that sends one server event; `emit` is synchronous (it enqueues), so each handler
and each step of a response changes state and emits its events without interleaving.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from tutor.realtime.audio import API_FORMAT, pcm_ms

from . import errors
from .audio import (
    EnergyVad,
    speech_ms,
    SpeechAudio,
    voiced_ms,
)
from .errors import RealtimeAPIError
from .events import IdFactory, client_event_id, parse_client_event
from .knobs import SimulatorKnobs
from .persona import LearnerTurn, ScriptedTutor, Speech, ToolCall, parse_instructions

logger = logging.getLogger("tutor.realtime.simulator")

Emit = Callable[[dict[str, Any]], None]

AUDIO_CHUNK_MS = 100  # audio per response.output_audio.delta
MIN_COMMIT_MS = 100  # the real API refuses to commit less (errors.commit_empty)
DEFAULT_INSTRUCTIONS = "You are a helpful, friendly assistant. Keep your answers short."
DEFAULT_VOICE = "alloy"

# Defaults the real API reports in session.created/updated for a turn detection object
# (openai-python realtime_audio_input_turn_detection.py docstrings: threshold 0.5,
# prefix_padding_ms 300, silence_duration_ms 500; create/interrupt default to true).
SERVER_VAD_DEFAULTS: dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}
SEMANTIC_VAD_DEFAULTS: dict[str, Any] = {
    "type": "semantic_vad",
    "eagerness": "auto",
    "create_response": True,
    "interrupt_response": True,
}
TRANSCRIPTION_DEFAULTS: dict[str, Any] = {"model": "gpt-4o-mini-transcribe", "language": None, "prompt": None}


def chunk_interval(pace: float) -> float:
    """Seconds between audio deltas: `pace` is a speed (1.0 real time, 2.0 twice as fast, 0 no wait)."""
    return AUDIO_CHUNK_MS / 1000 / pace if pace > 0 else 0.0


def split_text(text: str, parts: int) -> list[str]:
    """`text` cut at word boundaries into `parts` pieces (some may be empty) that join back to it."""
    parts = max(1, parts)
    words = text.split(" ")
    tokens = [w + " " for w in words[:-1]] + [words[-1]]
    pieces = [""] * parts
    for index, token in enumerate(tokens):
        pieces[min(parts - 1, index * parts // len(tokens))] += token
    return pieces


@dataclass
class Item:
    """A conversation item as the server keeps it (audio is kept as a length, not bytes)."""

    id: str
    type: str
    status: str = "completed"
    role: str | None = None
    content: list[dict[str, Any]] = field(default_factory=list)
    name: str | None = None
    call_id: str | None = None
    arguments: str | None = None
    output: str | None = None
    audio_ms: int = 0  # assistant output audio produced (and kept after truncation)
    extra: dict[str, Any] = field(default_factory=dict)  # item types the simulator only stores

    @classmethod
    def from_client(cls, raw: dict[str, Any], item_id: str) -> Item:
        kind = raw["type"]
        if kind == "message":
            content = [{k: v for k, v in part.items() if k != "audio"} for part in raw.get("content") or []]
            return cls(item_id, kind, role=raw["role"], content=content)
        if kind == "function_call":
            return cls(item_id, kind, name=raw["name"], call_id=raw.get("call_id"), arguments=raw["arguments"])
        if kind == "function_call_output":
            return cls(item_id, kind, call_id=raw["call_id"], output=raw["output"])
        return cls(item_id, kind, extra={k: v for k, v in raw.items() if k not in ("id", "status")})

    @property
    def is_assistant_audio(self) -> bool:
        return (
            self.type == "message"
            and self.role == "assistant"
            and bool(self.content)
            and self.content[0].get("type") == "output_audio"
        )

    def to_api(self) -> dict[str, Any]:
        item: dict[str, Any] = {"id": self.id, "object": "realtime.item", "type": self.type, "status": self.status}
        if self.type == "message":
            item.update(role=self.role, content=copy.deepcopy(self.content))
        elif self.type == "function_call":
            item.update(name=self.name, call_id=self.call_id, arguments=self.arguments)
        elif self.type == "function_call_output":
            item.update(call_id=self.call_id, output=self.output)
        else:
            item = {**self.extra, **item}
        return item


@dataclass
class Response:
    """A response being generated; `finish()` in the session ends it exactly once."""

    id: str
    voice: object
    modalities: list[str]
    conversation_id: str | None  # None: out of band (`conversation: "none"`)
    metadata: dict[str, Any] | None = None
    output: list[Item] = field(default_factory=list)
    open_item: Item | None = None  # the message item whose content part is streaming
    transcript: str = ""
    finished: bool = False
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def out_of_band(self) -> bool:
        return self.conversation_id is None

    @property
    def audio(self) -> bool:
        return "audio" in self.modalities

    async def pause(self, seconds: float) -> None:
        """Sleep for pacing, waking at once if the response is ended meanwhile."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        try:
            await asyncio.wait_for(self.stopped.wait(), seconds)
        except TimeoutError:
            pass

    def to_api(self, status: str, status_details: dict | None, usage: dict | None) -> dict[str, Any]:
        return {
            "object": "realtime.response",
            "id": self.id,
            "status": status,
            "status_details": status_details,
            "output": [item.to_api() for item in self.output],
            "conversation_id": self.conversation_id,
            "output_modalities": list(self.modalities),
            "max_output_tokens": "inf",
            "audio": {"output": {"format": dict(API_FORMAT), "voice": self.voice}},
            "usage": usage,
            "metadata": self.metadata,
        }


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
        self.config: dict[str, Any] = {
            "type": "realtime",
            "object": "realtime.session",
            "id": self.id,
            "model": model,
            "output_modalities": ["audio"],
            "instructions": DEFAULT_INSTRUCTIONS,
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": None,
            "truncation": "auto",
            "prompt": None,
            "expires_at": expires_at,
            "include": None,
            "audio": {
                "input": {
                    "format": dict(API_FORMAT),
                    "transcription": None,
                    "noise_reduction": None,
                    "turn_detection": dict(SERVER_VAD_DEFAULTS),
                },
                "output": {"format": dict(API_FORMAT), "voice": DEFAULT_VOICE, "speed": 1.0},
            },
        }
        self.items: list[Item] = []
        self.responses: dict[str, Response] = {}  # in progress, default and out of band
        self.active: Response | None = None  # the one in progress in the default conversation
        self.audio_produced = False  # the voice rule: once true, the voice is fixed
        self.input_buffer = bytearray()
        self.pending_input_item_id: str | None = None  # announced by speech_started
        self.vad = EnergyVad()
        self.tutor = ScriptedTutor(rng=random.Random(knobs.seed), true_level=knobs.true_level)
        self._tasks: set[asyncio.Task] = set()
        self._handlers: dict[str, Callable[[BaseModel, dict[str, Any]], None]] = {
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
        self._configure_vad()

    # --- properties of the effective configuration --------------------------------------

    @property
    def voice(self) -> object:
        return self.config["audio"]["output"]["voice"]

    @property
    def turn_detection(self) -> dict[str, Any] | None:
        return self.config["audio"]["input"]["turn_detection"]

    # --- entry points used by the connection --------------------------------------------

    def start(self) -> None:
        """Send `session.created`, the first event of every connection."""
        self._emit("session.created", session=copy.deepcopy(self.config))

    def handle_text(self, text: str) -> None:
        """Parse and apply one client text frame; client mistakes become `error` events."""
        try:
            parsed = parse_client_event(text)
        except RealtimeAPIError as err:
            self.send_error(err, _event_id_of(text))
            return
        try:
            self._handlers[parsed.raw["type"]](parsed.model, parsed.raw)
        except RealtimeAPIError as err:
            self.send_error(err, client_event_id(parsed.raw))

    def handle_binary(self) -> None:
        self.send_error(errors.binary_frame(), None)

    def send_error(self, err: RealtimeAPIError, client_event_id: str | None) -> None:
        logger.info(
            "client event rejected",
            extra={"session_id": self.id, "code": err.code, "client_event_id": client_event_id},
        )
        self._emit("error", error=err.as_error(client_event_id))

    async def aclose(self) -> None:
        """Cancel and await every response task (called when the connection ends)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # --- session.update -------------------------------------------------------------------

    def on_session_update(self, event: BaseModel, raw: dict[str, Any]) -> None:
        update = raw["session"]
        if update.get("type") != "realtime":
            raise errors.transcription_session_unsupported()
        voice = ((update.get("audio") or {}).get("output") or {}).get("voice")
        if voice is not None and voice != self.voice and self.audio_produced:
            raise errors.cannot_update_voice()  # the whole update is rejected
        self.config = _merged_session(self.config, update)
        self._configure_vad()
        logger.info("session updated", extra={"session_id": self.id, "voice": self.voice})
        self._emit("session.updated", session=copy.deepcopy(self.config))

    def _configure_vad(self) -> None:
        detection = self.turn_detection
        if detection is None:
            self.vad.reset()
            return
        self.vad.threshold = detection.get("threshold", SERVER_VAD_DEFAULTS["threshold"])
        self.vad.prefix_padding_ms = detection.get("prefix_padding_ms", SERVER_VAD_DEFAULTS["prefix_padding_ms"])
        self.vad.silence_duration_ms = detection.get(
            "silence_duration_ms", SERVER_VAD_DEFAULTS["silence_duration_ms"]
        )

    # --- input audio buffer and VAD --------------------------------------------------------

    def on_input_audio_buffer_append(self, event: BaseModel, raw: dict[str, Any]) -> None:
        try:
            pcm = base64.b64decode(raw["audio"], validate=True)
        except (binascii.Error, ValueError):
            raise errors.invalid_parameter_value("audio", "expected base64-encoded audio") from None
        self.input_buffer.extend(pcm)
        if self.turn_detection is None:
            self.vad.position_ms += round(pcm_ms(pcm))
            return
        for vad_event in self.vad.feed(pcm):
            if vad_event.kind == "speech_started":
                self._on_speech_started(vad_event.audio_ms)
            else:
                self._on_speech_stopped(vad_event.audio_ms)

    def _on_speech_started(self, audio_start_ms: int) -> None:
        self.pending_input_item_id = self.ids.new("item")
        self._emit(
            "input_audio_buffer.speech_started", audio_start_ms=audio_start_ms, item_id=self.pending_input_item_id
        )
        detection = self.turn_detection or {}
        if detection.get("interrupt_response", True) and self.active is not None:
            self.finish(self.active, "cancelled", reason="turn_detected")  # barge-in

    def _on_speech_stopped(self, audio_end_ms: int) -> None:
        item_id = self.pending_input_item_id or self.ids.new("item")
        self.pending_input_item_id = item_id
        self._emit("input_audio_buffer.speech_stopped", audio_end_ms=audio_end_ms, item_id=item_id)
        self._commit_input()
        if not (self.turn_detection or {}).get("create_response", True):
            return
        if self.active is not None:
            logger.info("vad response skipped", extra={"session_id": self.id, "active": self.active.id})
            return
        self._start_response(self._plan({}, out_of_band=False), voice=self.voice, conversation_id=self.conversation_id)

    def on_input_audio_buffer_commit(self, event: BaseModel, raw: dict[str, Any]) -> None:
        buffered = pcm_ms(self.input_buffer)
        if buffered < MIN_COMMIT_MS:
            raise errors.commit_empty(buffered)
        self._commit_input()
        self.vad.reset()

    def on_input_audio_buffer_clear(self, event: BaseModel, raw: dict[str, Any]) -> None:
        self.input_buffer.clear()
        self.pending_input_item_id = None
        self.vad.reset()
        self._emit("input_audio_buffer.cleared")

    def _commit_input(self) -> None:
        audio = bytes(self.input_buffer)
        self.input_buffer.clear()
        item_id = self.pending_input_item_id or self.ids.new("item")
        self.pending_input_item_id = None
        item = Item(item_id, "message", role="user", content=[{"type": "input_audio", "transcript": None}])
        self._emit("input_audio_buffer.committed", previous_item_id=self._last_item_id(), item_id=item_id)
        self._insert_item(item)
        self._emit_item_done(item)
        transcript = self._transcribe(item, audio)
        threshold = (self.turn_detection or {}).get("threshold", SERVER_VAD_DEFAULTS["threshold"])
        self.tutor.learner_turn(LearnerTurn("audio", transcript or "", voiced_ms(audio, threshold)))

    def _transcribe(self, item: Item, audio: bytes) -> str | None:
        """Input transcription, when configured: the simulated learner's sentence."""
        settings = self.config["audio"]["input"].get("transcription")
        if not settings:
            return None
        context = parse_instructions(self.config.get("instructions"))
        text = self.tutor.learner_utterance(settings.get("language") or context.language, context.level)
        for piece in split_text(text, max(1, len(text.split()) // 3)):
            self._emit(
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
        self._emit(
            "conversation.item.input_audio_transcription.completed",
            item_id=item.id,
            content_index=0,
            transcript=text,
            usage=usage,
        )
        item.content[0]["transcript"] = text
        return text

    # --- conversation items ----------------------------------------------------------------

    def on_conversation_item_create(self, event: BaseModel, raw: dict[str, Any]) -> None:
        item_raw = raw["item"]
        item_id = item_raw.get("id") or self.ids.new("item")
        if self._find(item_id) is not None:
            raise errors.duplicate_item_id(item_id)
        previous = raw.get("previous_item_id") or None
        if previous not in (None, "root") and self._find(previous) is None:
            raise errors.previous_item_not_found(previous)
        item = Item.from_client(item_raw, item_id)
        self._insert_item(item, after=previous)
        self._emit_item_done(item)
        if item.type == "function_call_output" and item.call_id:
            self.tutor.function_output(item.call_id)
        elif item.type == "message" and item.role == "user":
            self.tutor.learner_turn(_learner_turn(item_raw))

    def on_conversation_item_truncate(self, event: BaseModel, raw: dict[str, Any]) -> None:
        item_id, content_index, end_ms = raw["item_id"], raw["content_index"], raw["audio_end_ms"]
        item = self._find(item_id)
        if item is None:
            raise errors.truncate_unknown_item(item_id)
        if not item.is_assistant_audio:
            raise errors.truncate_not_audio()
        if content_index != 0:
            raise errors.truncate_bad_content_index(content_index)
        if end_ms < 0:
            raise errors.invalid_parameter_value("audio_end_ms", "must be greater than or equal to 0")
        if end_ms > item.audio_ms:
            raise errors.truncate_too_long(round(item.audio_ms), end_ms)
        item.audio_ms = end_ms
        # The server drops the transcript so no unheard text stays in the context.
        item.content[0]["transcript"] = None
        logger.info("item truncated", extra={"session_id": self.id, "item_id": item_id, "audio_end_ms": end_ms})
        self._emit("conversation.item.truncated", item_id=item_id, content_index=0, audio_end_ms=end_ms)

    def on_conversation_item_delete(self, event: BaseModel, raw: dict[str, Any]) -> None:
        item = self._find(raw["item_id"])
        if item is None:
            raise errors.delete_unknown_item(raw["item_id"])
        self.items.remove(item)
        self._emit("conversation.item.deleted", item_id=item.id)

    def on_conversation_item_retrieve(self, event: BaseModel, raw: dict[str, Any]) -> None:
        item = self._find(raw["item_id"])
        if item is None:
            raise errors.retrieve_unknown_item(raw["item_id"])
        self._emit("conversation.item.retrieved", item=item.to_api())

    def _find(self, item_id: str) -> Item | None:
        return next((item for item in self.items if item.id == item_id), None)

    def _last_item_id(self) -> str | None:
        return self.items[-1].id if self.items else None

    def _previous_id(self, item: Item) -> str | None:
        index = self.items.index(item)
        return self.items[index - 1].id if index else None

    def _insert_item(self, item: Item, after: str | None = None) -> None:
        """Add to the conversation (at the end, after `after`, or first for "root")."""
        if after == "root":
            self.items.insert(0, item)
        elif after is not None:
            self.items.insert(self.items.index(self._find(after)) + 1, item)  # type: ignore[arg-type]
        else:
            self.items.append(item)
        self._emit("conversation.item.added", previous_item_id=self._previous_id(item), item=item.to_api())

    def _emit_item_done(self, item: Item) -> None:
        if item in self.items:  # deleted meanwhile: nothing to report
            self._emit("conversation.item.done", previous_item_id=self._previous_id(item), item=item.to_api())

    # --- responses --------------------------------------------------------------------------

    def on_response_create(self, event: BaseModel, raw: dict[str, Any]) -> None:
        params = raw.get("response") or {}
        out_of_band = params.get("conversation") == "none"
        if not out_of_band and self.active is not None:
            raise errors.response_already_active(self.active.id)
        voice = ((params.get("audio") or {}).get("output") or {}).get("voice")
        if voice is not None and voice != self.voice and self.audio_produced:
            raise errors.cannot_update_voice()
        self._start_response(
            self._plan(params, out_of_band=out_of_band),
            voice=voice if voice is not None else self.voice,
            conversation_id=None if out_of_band else self.conversation_id,
            modalities=params.get("output_modalities"),
            metadata=params.get("metadata"),
        )

    def on_response_cancel(self, event: BaseModel, raw: dict[str, Any]) -> None:
        response_id = raw.get("response_id")
        # Without an id only the default conversation's response is cancelled (API reference).
        response = self.responses.get(response_id) if response_id else self.active
        if response is None:
            raise errors.cancel_not_active()
        self.finish(response, "cancelled", reason="client_cancelled")

    def _plan(self, params: dict[str, Any], *, out_of_band: bool) -> Speech | ToolCall:
        return self.tutor.plan(
            session_instructions=self.config.get("instructions"),
            response_instructions=params.get("instructions"),
            tools=params["tools"] if "tools" in params else self.config.get("tools"),
            tool_choice=params.get("tool_choice", self.config.get("tool_choice")),
            out_of_band=out_of_band,
        )

    def _start_response(
        self,
        plan: Speech | ToolCall,
        *,
        voice: object,
        conversation_id: str | None,
        modalities: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Response:
        response = Response(
            id=self.ids.new("resp"),
            voice=voice,
            modalities=list(modalities or self.config["output_modalities"]),
            conversation_id=conversation_id,
            metadata=metadata,
        )
        self.responses[response.id] = response
        if not response.out_of_band:
            self.active = response
        logger.info(
            "response created",
            extra={"session_id": self.id, "response_id": response.id, "plan": type(plan).__name__},
        )
        self._emit("response.created", response=response.to_api("in_progress", None, None))
        task = asyncio.get_running_loop().create_task(self._run(response, plan), name=f"simulator-{response.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return response

    async def _run(self, response: Response, plan: Speech | ToolCall) -> None:
        if response.finished:  # cancelled before this task first ran
            return
        try:
            if isinstance(plan, ToolCall):
                self._call_function(response, plan)
            else:
                await self._speak(response, plan.text)
            self.finish(response, "completed")
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("response failed", extra={"session_id": self.id, "response_id": response.id})
            self.finish(response, "failed")

    async def _speak(self, response: Response, text: str) -> None:
        item = Item(self.ids.new("item"), "message", status="in_progress", role="assistant")
        self._open_item(response, item)
        if response.audio:
            item.content = [{"type": "output_audio", "transcript": ""}]
            part: dict[str, Any] = {"type": "audio", "transcript": ""}
            speed = self.config["audio"]["output"].get("speed") or 1.0
            ms = self.knobs.audio_ms_per_response or speech_ms(text, speed)
            audio = SpeechAudio(text, response.voice, ms, AUDIO_CHUNK_MS)
            chunks = [audio.chunk] * len(audio)  # each chunk is synthesized as it is streamed
        else:
            item.content = [{"type": "output_text", "text": ""}]
            part = {"type": "text", "text": ""}
            chunks = [None] * max(1, len(text.split()) // 3)
        response.open_item = item
        self._emit("response.content_part.added", **_part_ids(response, item), part=part)
        for index, (make_chunk, piece) in enumerate(zip(chunks, split_text(text, len(chunks)))):
            if response.finished:
                return
            if response.audio:
                chunk = make_chunk(index)
                self._emit(
                    "response.output_audio.delta",
                    **_part_ids(response, item),
                    delta=base64.b64encode(chunk).decode("ascii"),
                )
                item.audio_ms += round(pcm_ms(chunk))
                self.audio_produced = True
                if piece:
                    self._emit("response.output_audio_transcript.delta", **_part_ids(response, item), delta=piece)
            else:
                self._emit("response.output_text.delta", **_part_ids(response, item), delta=piece)
            response.transcript += piece
            await response.pause(chunk_interval(self.knobs.pace) if response.audio else 0)

    def _call_function(self, response: Response, plan: ToolCall) -> None:
        arguments = json.dumps(plan.arguments, ensure_ascii=False)
        item = Item(
            self.ids.new("item"),
            "function_call",
            status="in_progress",
            name=plan.name,
            call_id=self.ids.new("call"),
            arguments="",
        )
        self._open_item(response, item)
        ids = {"response_id": response.id, "item_id": item.id, "output_index": response.output.index(item)}
        third = max(1, len(arguments) // 3)
        for start in range(0, len(arguments), third):
            delta = arguments[start : start + third]
            self._emit("response.function_call_arguments.delta", **ids, call_id=item.call_id, delta=delta)
        self._emit(
            "response.function_call_arguments.done", **ids, call_id=item.call_id, name=plan.name, arguments=arguments
        )
        item.arguments, item.status = arguments, "completed"
        self._close_item(response, item)
        self.tutor.pending_call_id = item.call_id
        logger.info("function called", extra={"session_id": self.id, "tool": plan.name, "arguments": arguments})

    def _open_item(self, response: Response, item: Item) -> None:
        response.output.append(item)
        self._emit(
            "response.output_item.added",
            response_id=response.id,
            output_index=response.output.index(item),
            item=item.to_api(),
        )
        if not response.out_of_band:
            self._insert_item(item)

    def _close_item(self, response: Response, item: Item) -> None:
        self._emit(
            "response.output_item.done",
            response_id=response.id,
            output_index=response.output.index(item),
            item=item.to_api(),
        )
        if not response.out_of_band:
            self._emit_item_done(item)

    def finish(self, response: Response, status: str, reason: str | None = None) -> None:
        """End `response` once: close its streaming item, then `response.done`."""
        if response.finished:
            return
        response.finished = True
        response.stopped.set()
        item = response.open_item
        if item is not None:
            response.open_item = None
            ids = _part_ids(response, item)
            if response.audio:
                self._emit("response.output_audio.done", **ids)
                self._emit("response.output_audio_transcript.done", **ids, transcript=response.transcript)
                item.content[0]["transcript"] = response.transcript
                part = {"type": "audio", "transcript": response.transcript}
            else:
                self._emit("response.output_text.done", **ids, text=response.transcript)
                item.content[0]["text"] = response.transcript
                part = {"type": "text", "text": response.transcript}
            self._emit("response.content_part.done", **ids, part=part)
            item.status = "completed" if status == "completed" else "incomplete"
            self._close_item(response, item)
        details: dict[str, Any] | None = None
        if status == "cancelled":
            details = {"type": "cancelled", "reason": reason}
        elif status == "failed":
            details = {
                "type": "failed",
                "error": {"type": "server_error", "code": None, "message": "The simulator failed."},
            }
        self.responses.pop(response.id, None)
        if self.active is response:
            self.active = None
        logger.info(
            "response done",
            extra={"session_id": self.id, "response_id": response.id, "status": status, "reason": reason},
        )
        self._emit("response.done", response=response.to_api(status, details, self._usage(response)))

    def _usage(self, response: Response) -> dict[str, Any]:
        audio_out = sum(round(item.audio_ms / 50) for item in response.output)  # ~20 tokens per second
        text_out = max(1, len(response.transcript) // 4)
        text_in = max(1, len(self.config.get("instructions") or "") // 4)
        return {
            "total_tokens": text_in + text_out + audio_out,
            "input_tokens": text_in,
            "output_tokens": text_out + audio_out,
            "input_token_details": {
                "text_tokens": text_in,
                "audio_tokens": 0,
                "image_tokens": 0,
                "cached_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }

    def _emit(self, event_type: str, **fields: Any) -> None:
        self.emit({"type": event_type, **fields})


def _part_ids(response: Response, item: Item) -> dict[str, Any]:
    return {
        "response_id": response.id,
        "item_id": item.id,
        "output_index": response.output.index(item),
        "content_index": 0,
    }


def _merged_session(config: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """The effective session after `update`: only fields present change; nested objects of
    `audio` merge key by key; turn detection and transcription objects get their defaults."""
    merged = copy.deepcopy(config)
    for key, value in update.items():
        if key == "type":
            continue
        if key != "audio":
            merged[key] = copy.deepcopy(value)
            continue
        for side, settings in (value or {}).items():
            target = merged["audio"].setdefault(side, {})
            for name, setting in (settings or {}).items():
                target[name] = _with_defaults(name, setting)
    return merged


def _with_defaults(name: str, setting: Any) -> Any:
    if setting is None:
        return None
    if name == "turn_detection":
        defaults = SEMANTIC_VAD_DEFAULTS if setting.get("type") == "semantic_vad" else SERVER_VAD_DEFAULTS
        return {**defaults, **setting}
    if name == "transcription":
        return {**TRANSCRIPTION_DEFAULTS, **setting}
    return copy.deepcopy(setting)


def _learner_turn(item_raw: dict[str, Any]) -> LearnerTurn:
    """A user message from `conversation.item.create` as a learner answer (text or audio)."""
    texts: list[str] = []
    audio = b""
    for part in item_raw.get("content") or []:
        if part.get("type") == "input_text":
            texts.append(part.get("text") or "")
        elif part.get("type") == "input_audio" and part.get("audio"):
            try:
                audio += base64.b64decode(part["audio"])
            except (binascii.Error, ValueError):
                pass
    if audio and not texts:
        return LearnerTurn("audio", "", voiced_ms(audio))
    return LearnerTurn("text", " ".join(texts))


def _event_id_of(text: str) -> str | None:
    try:
        return client_event_id(json.loads(text))
    except ValueError:
        return None
