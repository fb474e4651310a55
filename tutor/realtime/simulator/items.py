"""What the simulated server keeps: conversation items and the responses being generated."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from typing import Any

from openai.types.realtime import ConversationItem

from tutor.realtime.audio import API_FORMAT


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
    def from_client(cls, item: ConversationItem, item_id: str) -> Item:
        """The item of a `conversation.item.create` (its fields as the client set them)."""
        if item.type == "message":
            content = [{k: v for k, v in part.to_dict().items() if k != "audio"} for part in item.content]
            return cls(item_id, item.type, role=item.role, content=content)
        if item.type == "function_call":
            return cls(item_id, item.type, name=item.name, call_id=item.call_id, arguments=item.arguments)
        if item.type == "function_call_output":
            return cls(item_id, item.type, call_id=item.call_id, output=item.output)
        extra = {k: v for k, v in item.to_dict().items() if k not in ("id", "status")}
        return cls(item_id, item.type, extra=extra)

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
    """A response being generated; `Responses.finish()` ends it exactly once."""

    id: str
    voice: object
    modalities: list[str]
    conversation_id: str | None  # None: out of band (`conversation: "none"`)
    metadata: dict[str, Any] | None = None
    output: list[Item] = field(default_factory=list)
    open_item: Item | None = None  # the message item whose content part is streaming
    open_text: str = ""  # what that item has said so far
    transcript: str = ""  # what the whole response has said (usage)
    finished: bool = False
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    silent: bool = False  # knob silent_responses: asked for audio, says its words as text only

    @property
    def out_of_band(self) -> bool:
        return self.conversation_id is None

    @property
    def audio(self) -> bool:
        return "audio" in self.modalities and not self.silent

    async def pause(self, seconds: float) -> None:
        """Sleep for pacing, waking at once if the response is ended meanwhile."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel (python/cpython#86296)
            async with asyncio.timeout(seconds):
                await self.stopped.wait()
        except TimeoutError:
            pass

    def part_ids(self, item: Item) -> dict[str, Any]:
        """The fields naming `item`'s (only) content part in this response's events."""
        return {"response_id": self.id, "item_id": item.id, "output_index": self.output.index(item), "content_index": 0}

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
