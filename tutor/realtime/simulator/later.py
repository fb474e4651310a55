"""A later API version: the simulator's events as a newer Realtime API might send them (knob `later_version`).

The API grows by adding fields, enum values, output item types and event types (DESIGN section 2, "The
API adds fields and values over time"); the installed `openai` package knows only what was there when it
was generated. This mode sends every event of the simulator with what a later version might add, keeping
its meaning, so that a client that reads only what it uses goes on working:

- a field more at every level of every event (`openai`'s models allow extras: these still validate);
- a new value in the enums Parla reads where the value changes nothing for it: `status_details.reason`
  of a completed response, the `status` of a finished conversation item, the session's `truncation`;
- a new output item type: a reasoning item first in each response, announced with
  `response.output_item.added`/`.done` and listed before the real output in `response.done`, as the
  reasoning models of the Responses API do (`ResponseReasoningItem`, type "reasoning", in
  openai/types/responses/response_reasoning_item.py: id, summary, encrypted_content, status);
- an event type the package does not know, after each `response.created`.

Pure: `LaterVersion.transform(event)` returns the events to send instead of `event`.
"""

from __future__ import annotations

import copy
from typing import Any

LATER_FIELD = "added_later"
LATER_VALUE = "later_value"
LATER_EVENT_TYPE = "response.reasoning_summary_text.delta"  # not in openai 3.57's RealtimeServerEvent
REASONING_ITEM_TYPE = "reasoning"


def with_later_fields(value: Any) -> Any:
    """A copy of `value` with a field more in every JSON object at every level."""
    if isinstance(value, dict):
        return {**{k: with_later_fields(v) for k, v in value.items()}, LATER_FIELD: {"since": "a later version"}}
    if isinstance(value, list):
        return [with_later_fields(v) for v in value]
    return value


def reasoning_item(item_id: str) -> dict[str, Any]:
    return {"id": item_id, "type": REASONING_ITEM_TYPE, "object": "realtime.item", "status": "completed",
            "summary": [], "encrypted_content": None}


class LaterVersion:
    """The transformation of one connection's events (it remembers each response's reasoning item)."""

    def __init__(self, new_id) -> None:
        self._new_id = new_id  # the connection's IdFactory.new
        self._reasoning: dict[str, dict[str, Any]] = {}  # response id -> its reasoning item

    def transform(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event["type"]
        event = copy.deepcopy(event)
        extra: list[dict[str, Any]] = []
        if kind == "response.created":
            response_id = event["response"]["id"]
            item = self._reasoning[response_id] = reasoning_item(self._new_id("rs"))
            extra = [
                {"type": LATER_EVENT_TYPE, "response_id": response_id, "item_id": item["id"], "delta": "Thinking."},
                {"type": "response.output_item.added", "response_id": response_id, "output_index": 0, "item": item},
                {"type": "response.output_item.done", "response_id": response_id, "output_index": 0, "item": item},
            ]
        elif kind == "response.done":
            response = event["response"]
            item = self._reasoning.pop(response["id"], None)
            if item is not None:
                response["output"] = [item, *response.get("output", [])]
            if response.get("status") == "completed" and not response.get("status_details"):
                response["status_details"] = {"type": "completed", "reason": LATER_VALUE}
        elif kind == "conversation.item.done" and event.get("item", {}).get("status") == "completed":
            event["item"]["status"] = LATER_VALUE
        elif kind in ("session.created", "session.updated"):
            event["session"]["truncation"] = LATER_VALUE
        return [with_later_fields(e) for e in (event, *extra)]
