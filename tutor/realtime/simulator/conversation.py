"""The default conversation: its items in order, the client's item events and what they report."""

from __future__ import annotations

import base64
import binascii
import logging

from openai.types.realtime import (
    ConversationItem,
    ConversationItemCreateEvent,
    ConversationItemDeleteEvent,
    ConversationItemRetrieveEvent,
    ConversationItemTruncateEvent,
)

from . import errors
from .audio import voiced_ms
from .events import IdFactory, Send
from .items import Item
from .persona import LearnerTurn

logger = logging.getLogger("tutor.realtime.simulator")


class Conversation:
    """The items of the default conversation; every change is reported with its server event."""

    def __init__(self, *, send: Send, ids: IdFactory, session_id: str) -> None:
        self.items: list[Item] = []
        self._send = send
        self._ids = ids
        self._session_id = session_id

    # --- client events -------------------------------------------------------------------

    def create(self, event: ConversationItemCreateEvent) -> Item:
        """Add the item of `conversation.item.create`, after the item it names, if any."""
        item_id = event.item.id or self._ids.new("item")
        if self.find(item_id) is not None:
            raise errors.duplicate_item_id(item_id)
        previous = event.previous_item_id or None
        if previous not in (None, "root") and self.find(previous) is None:
            raise errors.previous_item_not_found(previous)
        item = Item.from_client(event.item, item_id)
        self.insert(item, after=previous)
        self.item_done(item)
        return item

    def truncate(self, event: ConversationItemTruncateEvent) -> None:
        item_id, content_index, end_ms = event.item_id, event.content_index, event.audio_end_ms
        item = self.find(item_id)
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
        logger.info(
            "item truncated", extra={"session_id": self._session_id, "item_id": item_id, "audio_end_ms": end_ms}
        )
        self._send("conversation.item.truncated", item_id=item_id, content_index=0, audio_end_ms=end_ms)

    def delete(self, event: ConversationItemDeleteEvent) -> None:
        item = self.find(event.item_id)
        if item is None:
            raise errors.delete_unknown_item(event.item_id)
        self.items.remove(item)
        self._send("conversation.item.deleted", item_id=item.id)

    def retrieve(self, event: ConversationItemRetrieveEvent) -> None:
        item = self.find(event.item_id)
        if item is None:
            raise errors.retrieve_unknown_item(event.item_id)
        self._send("conversation.item.retrieved", item=item.to_api())

    # --- items added by the server (committed input, response output) ----------------------

    def insert(self, item: Item, after: str | None = None) -> None:
        """Add to the conversation (at the end, after `after`, or first for "root")."""
        if after == "root":
            self.items.insert(0, item)
        elif after is not None:
            self.items.insert(self.items.index(self.find(after)) + 1, item)  # type: ignore[arg-type]
        else:
            self.items.append(item)
        self._send("conversation.item.added", previous_item_id=self._previous_id(item), item=item.to_api())

    def item_done(self, item: Item) -> None:
        if item in self.items:  # deleted meanwhile: nothing to report
            self._send("conversation.item.done", previous_item_id=self._previous_id(item), item=item.to_api())

    def find(self, item_id: str) -> Item | None:
        return next((item for item in self.items if item.id == item_id), None)

    def last_item_id(self) -> str | None:
        return self.items[-1].id if self.items else None

    def _previous_id(self, item: Item) -> str | None:
        index = self.items.index(item)
        return self.items[index - 1].id if index else None


def learner_turn(item: ConversationItem) -> LearnerTurn:
    """A user message from `conversation.item.create` as a learner answer (text or audio)."""
    texts: list[str] = []
    audio = b""
    for part in item.content:
        if part.type == "input_text":
            texts.append(part.text or "")
        elif part.type == "input_audio" and part.audio:
            try:
                audio += base64.b64decode(part.audio)
            except (binascii.Error, ValueError):
                pass
    if audio and not texts:
        return LearnerTurn("audio", "", voiced_ms(audio))
    return LearnerTurn("text", " ".join(texts))
