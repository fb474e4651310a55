"""One parse path for client events and one validator for server events, both from `openai`.

The official models in `openai.types.realtime` are the schema: the simulator keeps its own code
for state, not for shapes.
"""

from __future__ import annotations

import json
import random
import string
import typing
from collections.abc import Callable
from typing import Any

from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import BaseModel, TypeAdapter, ValidationError

from . import errors

# The send path of a session's parts: `send(event_type, **fields)` queues one server event.
Send = Callable[..., None]

CLIENT_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(RealtimeClientEvent)
SERVER_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)


def _members_by_type(union: object) -> dict[str, type[BaseModel]]:
    members: dict[str, type[BaseModel]] = {}
    for model in typing.get_args(typing.get_args(union)[0]):
        (event_type,) = typing.get_args(model.model_fields["type"].annotation)
        members[event_type] = model
    return members


_CLIENT_MODELS = _members_by_type(RealtimeClientEvent)
SERVED_EVENT_TYPES = frozenset(errors.SUPPORTED_CLIENT_EVENTS)


class ParsedEvent(typing.NamedTuple):
    model: BaseModel  # the official client event model
    raw: dict[str, Any]  # the JSON object as sent (keeps explicit nulls and field presence)


def client_event_id(raw: object) -> str | None:
    """The client's `event_id`, echoed in any `error` the event causes."""
    if isinstance(raw, dict) and isinstance(raw.get("event_id"), str):
        return raw["event_id"]
    return None


def parse_client_event(text: str) -> ParsedEvent:
    """Parse one client frame; raise errors.RealtimeAPIError describing the first problem."""
    try:
        raw = json.loads(text)
    except ValueError:
        raise errors.invalid_json() from None
    if not isinstance(raw, dict):
        raise errors.not_an_object()
    if "type" not in raw:
        raise errors.missing_parameter("type")
    event_type = raw["type"]
    if event_type not in SERVED_EVENT_TYPES:
        # Includes output_audio_buffer.clear: WebRTC/SIP only, not listed for websockets.
        raise errors.unknown_event_type(event_type)
    try:
        model = CLIENT_EVENT_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise errors.from_validation_error(exc, _CLIENT_MODELS[event_type].__name__) from None
    unknown = errors.find_unknown_parameter(model)
    if unknown:
        raise errors.unknown_parameter(unknown)
    return ParsedEvent(model, raw)


def validate_server_event(event: dict[str, Any]) -> BaseModel:
    """Validate an outgoing event against the official RealtimeServerEvent union (strict: no coercion)."""
    return SERVER_EVENT_ADAPTER.validate_python(event, strict=True)


class IdFactory:
    """Ids shaped like the real ones (`resp_` + 21 base62 characters), from a seeded RNG."""

    _ALPHABET = string.ascii_letters + string.digits

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def new(self, prefix: str) -> str:
        return prefix + "_" + "".join(self._rng.choice(self._ALPHABET) for _ in range(21))
