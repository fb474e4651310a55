"""Responses: creating them, streaming their output (speech or a function call), ending them once."""

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
from .deltas import AUDIO_CHUNK_MS, chunk_interval, split_text
from .events import IdFactory, Send
from .items import Item, Response
from .knobs import SimulatorKnobs
from .persona import ScriptedTutor, Speech, ToolCall

logger = logging.getLogger("tutor.realtime.simulator")


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

    def check_voice(self, voice: object) -> None:
        """The voice rule: a different voice is refused once the session has produced audio."""
        if voice is not None and voice != self._config.voice and self.audio_produced:
            raise errors.cannot_update_voice()

    # --- client events -------------------------------------------------------------------

    def create(self, params: RealtimeResponseCreateParams | None) -> None:
        """`response.create`; without `params`, the response turn detection creates."""
        params = params or RealtimeResponseCreateParams()
        out_of_band = params.conversation == "none"
        if not out_of_band and self.active is not None:
            raise errors.response_already_active(self.active.id)
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

    def _plan(self, params: RealtimeResponseCreateParams, *, out_of_band: bool) -> Speech | ToolCall:
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
        plan: Speech | ToolCall,
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
        logger.info(
            "response created",
            extra={"session_id": self._session_id, "response_id": response.id, "plan": type(plan).__name__},
        )
        self._send("response.created", response=response.to_api("in_progress", None, None))
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
        ids = response.part_ids(item)
        self._send("response.content_part.added", **ids, part=part)
        for index, (make_chunk, piece) in enumerate(zip(chunks, split_text(text, len(chunks)))):
            if response.finished:
                return
            if response.audio:
                chunk = make_chunk(index)
                self._send("response.output_audio.delta", **ids, delta=base64.b64encode(chunk).decode("ascii"))
                item.audio_ms += round(pcm_ms(chunk))
                self.audio_produced = True
                if piece:
                    self._send("response.output_audio_transcript.delta", **ids, delta=piece)
            else:
                self._send("response.output_text.delta", **ids, delta=piece)
            response.transcript += piece
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

    def finish(self, response: Response, status: str, reason: str | None = None) -> None:
        """End `response` once: close its streaming item, then `response.done`."""
        if response.finished:
            return
        response.finished = True
        response.stopped.set()
        item = response.open_item
        if item is not None:
            response.open_item = None
            ids = response.part_ids(item)
            if response.audio:
                self._send("response.output_audio.done", **ids)
                self._send("response.output_audio_transcript.done", **ids, transcript=response.transcript)
                item.content[0]["transcript"] = response.transcript
                part = {"type": "audio", "transcript": response.transcript}
            else:
                self._send("response.output_text.done", **ids, text=response.transcript)
                item.content[0]["text"] = response.transcript
                part = {"type": "text", "text": response.transcript}
            self._send("response.content_part.done", **ids, part=part)
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
        self.in_progress.pop(response.id, None)
        if self.active is response:
            self.active = None
        logger.info(
            "response done",
            extra={"session_id": self._session_id, "response_id": response.id, "status": status, "reason": reason},
        )
        self._send("response.done", response=response.to_api(status, details, self._usage(response)))

    def _usage(self, response: Response) -> dict[str, Any]:
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
