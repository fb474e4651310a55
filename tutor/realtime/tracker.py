"""ResponseTracker: what the upstream Realtime session is doing, from the events it sent us.

A pure, synchronous state machine. The realtime client feeds it every server event (parsed with the
`openai.types.realtime` models) and the client events it sends; the handover asks it questions instead of
keeping flags of its own ("is a response active?", "did this session ever speak?", "how much audio of
that item exists?"). It has no I/O and no clock, so it is tested on plain event sequences.

Robustness rules (events can arrive duplicated or, across reconnects, out of order):
- a `response.done` for an unknown or already finished response changes nothing but is remembered;
- audio deltas for a response we have not seen created still count (the response is created lazily);
- events of a response that already finished never make it active again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from tutor.realtime.audio import audio_ms

logger = logging.getLogger(__name__)


@dataclass
class OutputItem:
    """One output item of a response: a message with audio, or a function call."""

    item_id: str
    response_id: str
    type: str = "message"
    role: str = "assistant"
    audio_bytes: int = 0
    audio_done: bool = False
    transcript: str = ""
    truncated_at_ms: int | None = None
    # The event id of a `conversation.item.truncate` sent and not yet answered: a second one would race
    # it (the barge-in's and the handover's, issue 14: the first cut the item at 0 ms, the second was
    # refused, "Audio content of 0ms is already shorter than 1941ms"). Cleared by its answer; one that is
    # never answered leaves the item as it is (no second cut that could race it again).
    truncate_event_id: str | None = None
    call_id: str | None = None  # a function call's

    @property
    def audio_ms(self) -> int:
        return audio_ms(self.audio_bytes)


@dataclass
class ResponseState:
    response_id: str
    status: str = "in_progress"
    conversation: str = "auto"  # "none" for out-of-band responses
    item_ids: list[str] = field(default_factory=list)
    status_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.status == "in_progress"


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """Attribute of an openai model or key of a dict: the tracker accepts both."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


class ResponseTracker:
    """State of one upstream session, fed by `feed(server_event)` and `sent(client_event)`."""

    def __init__(self) -> None:
        self.responses: dict[str, ResponseState] = {}
        self.items: dict[str, OutputItem] = {}
        self.conversation_item_ids: set[str] = set()
        self.assistant_audio_produced = False
        self.session: Any = None  # the last session object from session.created / session.updated
        self.session_id: str | None = None
        # event_ids of response.create sent that neither a response.created nor an error answered yet
        # (the server handles client events in order, so the oldest is answered first).
        self.pending_create_ids: list[str] = []
        self.last_audio_item_id: str | None = None
        self.error_codes: list[str] = []  # every `error` event's code, in order (metrics and tests)
        self._handlers = {
            "session.created": self.on_session_updated,
            "session.updated": self.on_session_updated,
            "response.created": self.on_response_created,
            "response.output_item.added": self.on_output_item_added,
            "response.output_audio.delta": self.on_output_audio_delta,
            "response.output_audio.done": self.on_output_audio_done,
            "response.output_audio_transcript.delta": self.on_output_audio_transcript_delta,
            "response.output_text.delta": self.on_output_audio_transcript_delta,  # what a text reply says
            "response.done": self.on_response_done,
            "conversation.item.added": self.on_conversation_item_added,
            "conversation.item.created": self.on_conversation_item_added,
            "conversation.item.deleted": self.on_conversation_item_deleted,
            "conversation.item.truncated": self.on_conversation_item_truncated,
            "error": self.on_error,
        }

    # --- questions the handover asks -------------------------------------------------------------

    @property
    def active_response_id(self) -> str | None:
        """The in-progress response of the default conversation (the one `response.cancel` ends)."""
        active = [r for r in self.responses.values() if r.active and r.conversation != "none"]
        return active[-1].response_id if active else None

    @property
    def has_active_response(self) -> bool:
        return self.active_response_id is not None

    @property
    def pending_creates(self) -> int:
        return len(self.pending_create_ids)

    @property
    def may_produce_audio(self) -> bool:
        """True if this session spoke, is speaking, or was asked to speak and has not answered yet."""
        return self.assistant_audio_produced or self.has_active_response or self.pending_creates > 0

    def audio_finished(self, response_id: str | None) -> bool:
        """The response produced audio and every audio item of it is done: only its done events remain."""
        state = self.responses.get(response_id) if response_id else None
        if state is None:
            return False
        audio = [self.items[i] for i in state.item_ids if self.items[i].audio_bytes > 0]
        return bool(audio) and all(item.audio_done for item in audio)

    @property
    def voice(self) -> str | None:
        audio = _get(self.session, "audio")
        output = _get(audio, "output") if audio is not None else None
        return _get(output, "voice") if output is not None else None

    def calls_of(self, response_id: str) -> list[str]:
        """The call_ids of the function calls `response_id` made, in order."""
        state = self.responses.get(response_id)
        items = [self.items[i] for i in state.item_ids] if state else []
        return [item.call_id for item in items if item.type == "function_call" and item.call_id]

    def spoke_after_calls(self, response_id: str) -> bool:
        """The response said something after its last function call (the gpt-realtime-2 generation
        answers in the same response: preamble, call, answer): no new response is needed for it."""
        state = self.responses.get(response_id)
        items = [self.items[i] for i in state.item_ids] if state else []
        last_call = max((n for n, item in enumerate(items) if item.type == "function_call"), default=-1)
        return any(
            item.type == "message" and (item.audio_bytes > 0 or item.transcript) for item in items[last_call + 1 :]
        )

    def item(self, item_id: str | None) -> OutputItem | None:
        return self.items.get(item_id) if item_id else None

    def is_truncatable(self, item_id: str | None, played_ms: int) -> bool:
        """An assistant audio item that still exists, was cut short before its end, and is neither
        truncated nor being truncated (the first cut wins: the learner stopped hearing it there)."""
        item = self.item(item_id)
        return (
            item is not None
            and item.role == "assistant"
            and item.audio_bytes > 0
            and item.item_id in self.conversation_item_ids
            and item.truncated_at_ms is None
            and item.truncate_event_id is None
            and 0 <= played_ms < item.audio_ms
        )

    # --- feeding -----------------------------------------------------------------------------------

    def feed(self, event: Any) -> None:
        """Update the state from one server event (an openai model or a dict)."""
        handler = self._handlers.get(_get(event, "type"))
        if handler is not None:
            handler(event)

    def sent(self, event: dict) -> None:
        """Record a client event we sent: a `response.create` may start audio, a `conversation.item.truncate`
        is in flight until answered."""
        if event.get("type") == "response.create":
            response = event.get("response") or {}
            if response.get("conversation") != "none":
                self.pending_create_ids.append(event.get("event_id", ""))
        elif event.get("type") == "conversation.item.truncate":
            item = self.item(event.get("item_id"))
            if item is not None:
                item.truncate_event_id = event.get("event_id", "")

    def mark_finished(self, response_id: str) -> None:
        """The server told us (response_cancel_not_active) that this response is no longer active."""
        state = self._response(response_id)
        if state.active:
            state.status = "completed"

    # --- server event handlers (named after the event) ---------------------------------------------

    def on_session_updated(self, event: Any) -> None:
        self.session = _get(event, "session")
        self.session_id = _get(self.session, "id") or self.session_id

    def on_response_created(self, event: Any) -> None:
        response = _get(event, "response")
        response_id = _get(response, "id")
        if not response_id:
            return
        state = self._response(response_id)
        if not state.active:
            return  # created after done: a duplicate, never re-activate
        # Out-of-band responses (conversation "none") have conversation_id null; default-conversation
        # ones carry "conv_..." (openai.types.realtime.RealtimeResponse.conversation_id docstring).
        state.conversation = "auto" if _get(response, "conversation_id") else "none"
        if state.conversation == "auto" and self.pending_create_ids:
            self.pending_create_ids.pop(0)

    def on_output_item_added(self, event: Any) -> None:
        item = _get(event, "item")
        self._item(_get(item, "id"), _get(event, "response_id"), item)

    def on_output_audio_delta(self, event: Any) -> None:
        item = self._item(_get(event, "item_id"), _get(event, "response_id"))
        # base64: 4 characters carry 3 bytes; padding at the end of the chunk is excluded.
        delta = _get(event, "delta") or ""
        item.audio_bytes += len(delta) * 3 // 4 - delta[-2:].count("=")
        self.assistant_audio_produced = True
        self.last_audio_item_id = item.item_id

    def on_output_audio_done(self, event: Any) -> None:
        self._item(_get(event, "item_id"), _get(event, "response_id")).audio_done = True

    def on_output_audio_transcript_delta(self, event: Any) -> None:
        self._item(_get(event, "item_id"), _get(event, "response_id")).transcript += _get(event, "delta") or ""

    def on_response_done(self, event: Any) -> None:
        response = _get(event, "response")
        response_id = _get(response, "id")
        if not response_id:
            return
        state = self._response(response_id)
        state.status = _get(response, "status") or "completed"
        details = _get(response, "status_details")
        state.status_reason = _get(details, "reason") if details is not None else None

    def on_conversation_item_added(self, event: Any) -> None:
        item_id = _get(_get(event, "item"), "id")
        if item_id:
            self.conversation_item_ids.add(item_id)

    def on_conversation_item_deleted(self, event: Any) -> None:
        self.conversation_item_ids.discard(_get(event, "item_id"))

    def on_conversation_item_truncated(self, event: Any) -> None:
        item = self.items.get(_get(event, "item_id"))
        if item is not None:
            item.truncated_at_ms = _get(event, "audio_end_ms")
            item.truncate_event_id = None

    def on_error(self, event: Any) -> None:
        error = _get(event, "error")
        event_id = _get(error, "event_id")
        self.error_codes.append(_get(error, "code") or _get(error, "type") or "unknown")
        if event_id in self.pending_create_ids:
            # A refused response.create (e.g. conversation_already_has_active_response) starts nothing.
            self.pending_create_ids.remove(event_id)
        elif event_id:
            for item in self.items.values():
                if item.truncate_event_id == event_id:  # a refused truncate cut nothing
                    item.truncate_event_id = None

    # --- internals -----------------------------------------------------------------------------------

    def _response(self, response_id: str) -> ResponseState:
        state = self.responses.get(response_id)
        if state is None:
            state = self.responses[response_id] = ResponseState(response_id)
        return state

    def _item(self, item_id: str, response_id: str, item: Any = None) -> OutputItem:
        state = self.items.get(item_id)
        if state is None:
            state = self.items[item_id] = OutputItem(item_id=item_id, response_id=response_id)
            self._response(response_id).item_ids.append(item_id)
        if item is not None:
            state.type = _get(item, "type") or state.type
            state.role = _get(item, "role") or ("assistant" if state.type == "message" else state.type)
            state.call_id = _get(item, "call_id") or state.call_id
        return state
