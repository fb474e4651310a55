"""The `openai.types.realtime` event models, validated the fast way: every union the models declare
as discriminated is one that pydantic reads as discriminated.

`openai` marks its unions `Annotated[Union[...], PropertyInfo(discriminator="type")]`: metadata of its
own, which pydantic does not read, so pydantic validates them in smart mode, trying the members in
turn. That is so for the top-level event unions and for the unions nested in events, above all
`ConversationItem` (nine members) in every `conversation.item.*`, `response.output_item.*` and, as a
list, `response.done`. Measured here (pydantic 2.14): an assistant message item alone validates in
21 us through that union and in 2.2 us through its own model; bench/hotpath.py times whole events.

`fast(type)` returns the same type with each such union given pydantic's `Discriminator` on the same
field, and each model class that holds one (at any depth) replaced by a subclass of it whose field
says so. Where members share a tag (`ConversationItem`'s three `"message"` members), they form a
nested union discriminated on the Literal field that tells them apart (`role`). The members are
`openai`'s own classes and the subclasses add nothing but the annotation: every event parsed from
JSON is an instance of the `openai` class its `type` names, with the same fields and values
(tutor/tests/test_realtime_client.py compares them with the smart union's, event by event). What
differs is Python-level only: a parsed event is not `==` to the smart union's (pydantic compares
classes), does not pickle, and `validate_client_event` takes dicts, not instances of the `openai`
classes it re-annotates (Parla sends dicts).
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

# `PropertyInfo` is where the `openai` models mark their unions' discriminators (openai/_utils/_transform.py);
# not public API, so a release that moves it fails this import at start-up, not silently (openai is pinned).
from openai._utils import PropertyInfo
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import BaseModel, ConfigDict, Discriminator, TypeAdapter, ValidationError, create_model

_rebuilt: dict[type, type] = {}
_UNIONS = (Union, types.UnionType)


def fast(tp: Any) -> Any:
    """`tp` with every `openai`-discriminated union in it discriminated for pydantic (see the module)."""
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return _model(tp)
    if origin is Annotated:
        base, *metadata = typing.get_args(tp)
        field = next((m.discriminator for m in metadata if isinstance(m, PropertyInfo) and m.discriminator), None)
        union = _discriminated(typing.get_args(base), field) if field and typing.get_origin(base) in _UNIONS else None
        if union is not None:
            return union
        new = fast(base)  # members that cannot be told apart: smart mode, as in `openai`
        return tp if new is base else Annotated[(new, *metadata)]
    if origin is None or origin is Literal:
        return tp
    args = typing.get_args(tp)
    new_args = tuple(fast(arg) for arg in args)
    if all(new is old for new, old in zip(new_args, args)):
        return tp
    if origin in _UNIONS:
        return Union[new_args]
    return origin[new_args]


def adapter(union: Any) -> TypeAdapter:
    """A TypeAdapter of one of `openai`'s top-level event unions (see the module).

    Parsing JSON caches only the keys (field names, a few hundred): by default pydantic-core also keeps
    every string value it parses in a process-wide cache of 16,384 entries, here the unique ids of
    events, items and responses of finished sessions (about 1.1 MiB held for nothing; issue 27)."""
    return TypeAdapter(fast(union), config=ConfigDict(cache_strings="keys"))


def _model(cls: type[BaseModel]) -> type[BaseModel]:
    """`cls`, or a subclass of it whose fields read their discriminators (built once per class)."""
    if cls in _rebuilt:
        return _rebuilt[cls]
    _rebuilt[cls] = cls  # a model that refers to itself is taken as it is while it is being rebuilt
    changed = {}
    for name, info in cls.model_fields.items():
        annotation = _declared(cls, name)
        new = fast(annotation)
        if new is not annotation:
            changed[name] = (new, info)
    if changed:
        _rebuilt[cls] = create_model(cls.__name__, __base__=cls, __module__=__name__, **changed)
    return _rebuilt[cls]


def _declared(cls: type[BaseModel], name: str) -> Any:
    """A field's annotation as its class wrote it, `openai`'s Annotated metadata included (pydantic's
    FieldInfo keeps only the metadata it knows)."""
    for klass in cls.__mro__:
        annotation = vars(klass).get("__annotations__", {}).get(name)
        if annotation is not None and not isinstance(annotation, str):
            return annotation
    return cls.model_fields[name].annotation


def _literal(cls: type[BaseModel], field: str) -> Any:
    """The one value a model's required Literal field can take (None if it is no such field: a field
    with a default would let pydantic take a member whose input lacks it)."""
    info = cls.model_fields.get(field)
    if info is None or not info.is_required() or typing.get_origin(info.annotation) is not Literal:
        return None
    values = typing.get_args(info.annotation)
    return values[0] if len(values) == 1 else None


def _discriminated(members: tuple, field: str) -> Any:
    """The union of `members` discriminated on `field` (see `_tagged`), or None where its members
    cannot be told apart by their Literal fields."""
    optional = type(None) in members
    union = _tagged([m for m in members if m is not type(None)], field)
    if union is None:
        return None
    return Union[union, None] if optional else union


def _tagged(models: list, field: str, used: tuple = ()) -> Any:
    """`models` as a union discriminated on the Literal `field`; members that share a value of it as a
    nested union discriminated on another Literal field (ConversationItem's three "message" members on
    `role`). None if they cannot be told apart so."""
    if not all(isinstance(m, type) and issubclass(m, BaseModel) for m in models):
        return None
    groups: dict[Any, list] = {}
    for model in models:
        value = _literal(model, field)
        if value is None:
            return None
        groups.setdefault(value, []).append(model)
    choices = []
    for group in groups.values():
        if len(group) == 1:
            choices.append(fast(group[0]))
            continue
        nested = next((union for name in group[0].model_fields if name not in (field, *used)
                       if (union := _tagged(group, name, (*used, field))) is not None), None)
        if nested is None:
            return None
        choices.append(nested)
    return Annotated[Union[tuple(choices)], Discriminator(field)]


_server_events = adapter(RealtimeServerEvent)
_client_events = adapter(RealtimeClientEvent)


def parse_server_event(raw: str | bytes) -> Any:
    """A server event as its `openai.types.realtime` model (ValidationError if it is none of them)."""
    return _server_events.validate_json(raw)


def validate_client_event(event: dict) -> Any:
    """The `openai.types.realtime` model of a client event we are about to send."""
    return _client_events.validate_python(event)


# --- the tolerant reader ------------------------------------------------------------------------
#
# The API adds fields, enum values, output item types and event types over time. An extra field is
# already harmless (`openai`'s models allow extras), but a new value of a Literal (a `status_details.reason`),
# a new member of a discriminated union (a "reasoning" output item in `response.done`) or a new event type
# fails validation, and an event Parla acts on would be lost: a `response.done` dropped for its reasoning
# item left the response "in progress" for good (issue 25). LiveKit reads server events without
# validating them for this reason ("so a field added by a later API version changes nothing":
# livekit-plugins-openai realtime_model.py constructs its events with `model_construct`).
#
# So reading goes: the strict, fast parse first (every event of the current API, above all the audio
# deltas of the hot path, costs exactly what it did); only an event that fails it is read as `Loose`:
# the JSON as sent, read by attribute like the models (a missing field is None), with nothing dropped.
# The fields Parla uses are read from it; the rest are ignored.


class Loose:
    """A server event (or a part of one) that the `openai` models do not know in full, read by attribute
    as the models are: `event.response.output[0].id`; a field that is not there reads as None."""

    __slots__ = ("_data",)

    def __init__(self, data: dict):
        self._data = data

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _loose(self._data.get(name))

    def __repr__(self) -> str:
        return f"Loose({self._data!r})"

    def to_dict(self) -> dict:
        """The JSON object as the server sent it."""
        return self._data


def _loose(value: Any) -> Any:
    if isinstance(value, dict):
        return Loose(value)
    if isinstance(value, list):
        return [_loose(entry) for entry in value]
    return value


@dataclass(frozen=True)
class LenientRead:
    """An event read as `Loose`: its type, and where the `openai` models first disagreed with it."""

    event_type: str
    where: str  # e.g. "response.output.0: union_tag_invalid" (the first error of the strict parse)


def read_server_event(raw: str | bytes) -> tuple[Any, LenientRead | None]:
    """A server event for Parla to act on: the `openai` model when it validates (the fast path), else the
    event as `Loose` with what did not validate. Raises ValueError only when `raw` is not a JSON object
    with a string `type` (nothing can be read from it)."""
    try:
        return _server_events.validate_json(raw), None
    except ValidationError as exc:
        data = json.loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise ValueError("not a server event: no JSON object with a string type") from exc
        first = exc.errors(include_url=False, include_input=False)[0]
        # The union's member tag is noise in the location ("response.done" appears once per level).
        where = ".".join(str(part) for part in first["loc"] if part != data["type"])
        return Loose(data), LenientRead(data["type"], f"{where or '(event)'}: {first['type']}")
