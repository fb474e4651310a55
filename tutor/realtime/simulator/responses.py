"""Responses: creating them, streaming their output items (speech, function calls), ending them once."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

from openai.types.realtime import RealtimeResponseCreateParams

from tutor.realtime.audio import pcm_ms
from tutor.realtime.tasks import cancel_and_wait

from . import errors
from .audio import SpeechAudio, speech_ms
from .config import SessionConfig, plain, requested_voice
from .conversation import Conversation
from .deltas import AUDIO_CHUNK_MS, chunk_interval, split_text, transcript_ahead
from .events import IdFactory, Send
from .items import Item, Response
from .knobs import SimulatorKnobs
from .persona import Plan, ScriptedTutor, ToolCall

logger = logging.getLogger("tutor.realtime.simulator")

# What rate_limits.updated reports (simulator choice: one tier's round numbers).
REQUESTS_PER_MINUTE = 5_000
TOKENS_PER_MINUTE = 400_000


class Responses:
    """The responses of one session: those in progress, each streamed by an owned task."""

    def __init__(
        self,
        *,
        send: Send,
        ids: IdFactory,
        knobs: SimulatorKnobs,
        config: SessionConfig,
        conversation: Conversation,
        conversation_id: str,
        tutor: ScriptedTutor,
        session_id: str,
    ) -> None:
        self.in_progress: dict[str, Response] = {}  # default and out of band
        self.active: Response | None = None  # the one in progress in the default conversation
        self.audio_produced = False  # the voice rule: once true, the voice is fixed
        self._send = send
        self._ids = ids
        self._knobs = knobs
        self._config = config
        self._conversation = conversation
        self._conversation_id = conversation_id
        self._tutor = tutor
        self._session_id = session_id
        self._tasks: set[asyncio.Task] = set()
        self._created = 0  # responses created on this connection (knobs.fails counts them)
        self._tokens_used = 0

    def check_voice(self, voice: object) -> None:
        """The voice rule: a different voice is refused once the session has produced audio."""
        if voice is not None and voice != self._config.voice and self.audio_produced:
            raise errors.cannot_update_voice()

    def check_speed(self, speed: float | None) -> None:
        """`speed` changes "only in between model turns": refused while a response is in progress."""
        if speed is not None and speed != self._config.speed and self.in_progress:
            raise errors.cannot_update_speed()

    # --- client events -------------------------------------------------------------------

    def create(self, params: RealtimeResponseCreateParams | None, *, by_vad: bool = False) -> None:
        """`response.create` (`params` may be None), or with `by_vad` the response turn detection creates."""
        params = params or RealtimeResponseCreateParams()
        out_of_band = params.conversation == "none"
        if not out_of_band and self.active is not None:
            raise errors.response_already_active(self.active.id)
        failure = self._knobs.fails(self._created + 1)
        if failure and self._knobs.fail_as == "error":
            # Knob fail_as=error: the refusal comes as an `error` event, no response is created (the
            # shape of a mid-session refusal; its error object is a failed response's).
            self._created += 1
            error = errors.failed_response(failure, self._config.data["model"])
            if not by_vad:
                raise error  # answered with the response.create's event_id (session.handle_text)
            self._send("error", error=error.as_error(None))
            return None
        voice = requested_voice(params.audio)
        self.check_voice(voice)
        self._start(
            self._plan(params, out_of_band=out_of_band),
            voice=voice if voice is not None else self._config.voice,
            conversation_id=None if out_of_band else self._conversation_id,
            modalities=params.output_modalities,
            metadata=params.metadata,
        )

    def cancel(self, response_id: str | None) -> None:
        # Without an id only the default conversation's response is cancelled (API reference).
        response = self.in_progress.get(response_id) if response_id else self.active
        if response is None:
            raise errors.cancel_not_active()
        self.finish(response, "cancelled", reason="client_cancelled")

    async def aclose(self) -> None:
        """Cancel and await every response task (when the connection ends)."""
        await cancel_and_wait(*self._tasks)
        self._tasks.clear()

    # --- generation ----------------------------------------------------------------------------

    def _plan(self, params: RealtimeResponseCreateParams, *, out_of_band: bool) -> Plan:
        given = params.model_fields_set  # a field sent as null overrides the session's
        return self._tutor.plan(
            session_instructions=self._config.instructions,
            response_instructions=params.instructions,
            tools=plain(params.tools) if "tools" in given else self._config.tools,
            tool_choice=plain(params.tool_choice) if "tool_choice" in given else self._config.tool_choice,
            out_of_band=out_of_band,
        )

    def _start(
        self,
        plan: Plan,
        *,
        voice: object,
        conversation_id: str | None,
        modalities: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Response:
        response = Response(
            id=self._ids.new("resp"),
            voice=voice,
            modalities=list(modalities or self._config.output_modalities),
            conversation_id=conversation_id,
            metadata=metadata,
        )
        self.in_progress[response.id] = response
        if not response.out_of_band:
            self.active = response
        self._created += 1
        failure = self._knobs.fails(self._created)
        response.silent = self._created in self._knobs.silent_numbers
        logger.info(
            "response created",
            extra={
                "session_id": self._session_id,
                "response_id": response.id,
                "plan": [type(part).__name__ for part in plan],
                "failure": failure,
            },
        )
        self._send("response.created", response=response.to_api("in_progress", None, None))
        error = errors.failed_response(failure, self._config.data["model"]) if failure else None
        task = asyncio.get_running_loop().create_task(
            self._run(response, plan, error), name=f"simulator-{response.id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return response

    async def _run(self, response: Response, plan: Plan, error: errors.RealtimeAPIError | None) -> None:
        if response.finished:  # cancelled before this task first ran
            return
        if error is not None:
            # Rate limit, quota, model access: the response ends `failed` at once, with no output
            # (openai/openai-python#2502, openai/openai-realtime-console#561: output [], usage zero).
            self.finish(response, "failed", error=error)
            return
        try:
            for index, part in enumerate(plan):  # one output item after the other, as the API streams them
                if response.finished:  # cancelled (before this task first ran, or meanwhile)
                    if any(isinstance(later, ToolCall) for later in plan[index:]):
                        # Cut before its call (e.g. the learner spoke over the preamble): the answer
                        # is still unrecorded, and the next reply records it ("when a caller interrupts
                        # mid-thought, gpt-realtime-2 discards the current chain of thought and starts a
                        # fresh turn", vercel.com/ai-gateway/models/gpt-realtime-2/about).
                        self._tutor.call_not_made()
                    return
                if isinstance(part, ToolCall):
                    self._call_function(response, part)
                else:
                    await self._speak(response, part.text)
                    if not response.finished:
                        self._close_speech(response, "completed")
            self.finish(response, "completed")
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("response failed", extra={"session_id": self._session_id, "response_id": response.id})
            self.finish(response, "failed")

    async def _speak(self, response: Response, text: str) -> None:
        item = Item(self._ids.new("item"), "message", status="in_progress", role="assistant")
        self._open_item(response, item)
        if response.audio:
            item.content = [{"type": "output_audio", "transcript": ""}]
            part: dict[str, Any] = {"type": "audio", "transcript": ""}
            ms = self._knobs.audio_ms_per_response or speech_ms(text, self._config.speed)
            audio = SpeechAudio(text, response.voice, ms, AUDIO_CHUNK_MS)
            chunks = [audio.chunk] * len(audio)  # each chunk is synthesized as it is streamed
        else:
            item.content = [{"type": "output_text", "text": ""}]
            part = {"type": "text", "text": ""}
            chunks = [None] * max(1, len(text.split()) // 3)
        response.open_item = item
        response.open_text = ""
        ids = response.part_ids(item)
        self._send("response.content_part.added", **ids, part=part)
        pieces = split_text(text, len(chunks))
        for index, make_chunk in enumerate(chunks):
            if response.finished:
                return
            if response.audio:
                # The transcript leads: its pieces go out before the audio they describe is generated.
                for piece in transcript_ahead(pieces, index):
                    if piece:
                        self._send("response.output_audio_transcript.delta", **ids, delta=piece)
                        response.transcript += piece
                        response.open_text += piece
                chunk = make_chunk(index)
                self._send("response.output_audio.delta", **ids, delta=base64.b64encode(chunk).decode("ascii"))
                item.audio_ms += round(pcm_ms(chunk))
                self.audio_produced = True
            else:
                self._send("response.output_text.delta", **ids, delta=pieces[index])
                response.transcript += pieces[index]
                response.open_text += pieces[index]
            await response.pause(chunk_interval(self._knobs.pace) if response.audio else 0)

    def _call_function(self, response: Response, plan: ToolCall) -> None:
        arguments = json.dumps(plan.arguments, ensure_ascii=False)
        item = Item(
            self._ids.new("item"),
            "function_call",
            status="in_progress",
            name=plan.name,
            call_id=self._ids.new("call"),
            arguments="",
        )
        self._open_item(response, item)
        ids = {"response_id": response.id, "item_id": item.id, "output_index": response.output.index(item)}
        third = max(1, len(arguments) // 3)
        for start in range(0, len(arguments), third):
            delta = arguments[start : start + third]
            self._send("response.function_call_arguments.delta", **ids, call_id=item.call_id, delta=delta)
        self._send(
            "response.function_call_arguments.done", **ids, call_id=item.call_id, name=plan.name, arguments=arguments
        )
        item.arguments, item.status = arguments, "completed"
        self._close_item(response, item)
        self._tutor.pending_call_id = item.call_id
        logger.info(
            "function called", extra={"session_id": self._session_id, "tool": plan.name, "arguments": arguments}
        )

    def _open_item(self, response: Response, item: Item) -> None:
        response.output.append(item)
        self._send_output_item("response.output_item.added", response, item)
        if not response.out_of_band:
            self._conversation.insert(item)

    def _close_item(self, response: Response, item: Item) -> None:
        self._send_output_item("response.output_item.done", response, item)
        if not response.out_of_band:
            self._conversation.item_done(item)

    def _send_output_item(self, event_type: str, response: Response, item: Item) -> None:
        self._send(event_type, response_id=response.id, output_index=response.output.index(item), item=item.to_api())

    # --- the end ---------------------------------------------------------------------------------

    def finish(
        self, response: Response, status: str, reason: str | None = None, error: errors.RealtimeAPIError | None = None
    ) -> None:
        """End `response` once: close its streaming item, then `response.done`, then `rate_limits.updated`."""
        if response.finished:
            return
        response.finished = True
        response.stopped.set()
        self._close_speech(response, status)
        details: dict[str, Any] | None = None
        if status == "cancelled":
            details = {"type": "cancelled", "reason": reason}
        elif status == "failed":
            failure = error or errors.RealtimeAPIError("The simulator failed.", None, type="server_error")
            details = {"type": "failed", "error": failure.as_status_error()}
        self.in_progress.pop(response.id, None)
        if self.active is response:
            self.active = None
        logger.info(
            "response done",
            extra={"session_id": self._session_id, "response_id": response.id, "status": status, "reason": reason},
        )
        usage = self._usage(response, produced=error is None)
        self._send("response.done", response=response.to_api(status, details, usage))
        self._tokens_used += usage["total_tokens"]
        # The openai model's docstring says "Emitted at the beginning of a Response", but captures of
        # the GA API show it after `response.done` (the public capture "WebSocket captures: Inworld
        # TTS/STT and OpenAI Realtime (2026-09-18)", probe 8: "`rate_limits.updated` AFTER it"): as captured.
        limited = error is not None and error.code == errors.RATE_LIMIT_CODE
        self._send("rate_limits.updated", rate_limits=self._rate_limits(limited=limited))

    def _rate_limits(self, *, limited: bool) -> list[dict[str, Any]]:
        """Requests and tokens left this minute; a rate-limited response leaves none until the reset."""
        reset = float(self._knobs.rate_limit_reset_seconds)
        return [
            {
                "name": "requests",
                "limit": REQUESTS_PER_MINUTE,
                "remaining": max(0, REQUESTS_PER_MINUTE - self._created),
                "reset_seconds": 0.012,
            },
            {
                "name": "tokens",
                "limit": TOKENS_PER_MINUTE,
                "remaining": 0 if limited else max(0, TOKENS_PER_MINUTE - self._tokens_used),
                "reset_seconds": reset if limited else round(60.0 * self._tokens_used / TOKENS_PER_MINUTE, 3),
            },
        ]

    def _close_speech(self, response: Response, status: str) -> None:
        """End the message item whose content is streaming (if any): its done events, in order."""
        item = response.open_item
        if item is None:
            return
        response.open_item = None
        ids = response.part_ids(item)
        text = response.open_text
        if response.audio:
            self._send("response.output_audio.done", **ids)
            self._send("response.output_audio_transcript.done", **ids, transcript=text)
            item.content[0]["transcript"] = text
            part = {"type": "audio", "transcript": text}
        else:
            self._send("response.output_text.done", **ids, text=text)
            item.content[0]["text"] = text
            part = {"type": "text", "text": text}
        self._send("response.content_part.done", **ids, part=part)
        item.status = "completed" if status == "completed" else "incomplete"
        self._close_item(response, item)

    def _usage(self, response: Response, produced: bool = True) -> dict[str, Any]:
        if not produced:  # a failed response used nothing (openai/openai-python#2502: all zero)
            zero = {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0}
            return {
                "total_tokens": 0,
                "input_tokens": 0,
                "output_tokens": 0,
                "input_token_details": {**zero, "cached_tokens": 0, "cached_tokens_details": dict(zero)},
                "output_token_details": {"text_tokens": 0, "audio_tokens": 0},
            }
        audio_out = sum(round(item.audio_ms / 50) for item in response.output)  # ~20 tokens per second
        text_out = max(1, len(response.transcript) // 4)
        text_in = max(1, len(self._config.instructions or "") // 4)
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
