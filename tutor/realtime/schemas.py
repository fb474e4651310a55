"""The `openai.types.realtime` event models, validated the fast way: every union the models declare
as discriminated is one that pydantic reads as discriminated.

`openai` marks its unions `Annotated[Union[...], PropertyInfo(discriminator="type")]`: metadata of its
own, which pydantic does not read, so pydantic validates them in smart mode, trying the members in
turn. That is so for the top-level event unions and for the unions nested in events, above all
`ConversationItem` (nine members) in every `conversation.item.*`, `response.output_item.*` and, as a
list, `response.done`. Measured here (pydantic 2.14, bench/hotpath.py): an assistant message item
alone validates in 21 us through that union and in 2.2 us through its own model; a whole
`response.output_item.done` in 24 us.

`fast(type)` returns the same type with each such union given pydantic's `Discriminator` on the same
field, and each model class that holds one (at any depth) replaced by a subclass of it whose field
says so. The members are `openai`'s own classes; the subclasses add nothing but the annotation, so
every parsed event is an instance of the `openai` class its `type` names, with the same fields and
values (tutor/tests/test_realtime_client.py compares them with the smart union's, event by event).
Where the members share a tag (`ConversationItem`'s three `"message"` members differ by `role`), the
discriminator reads the field that tells them apart too.
"""

from __future__ import annotations

import types
import typing
from collections import Counter
from typing import Annotated, Any, Literal, Union

from openai._utils import PropertyInfo
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import BaseModel, Discriminator, Tag, TypeAdapter, create_model

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
        if field is not None and typing.get_origin(base) in _UNIONS:
            return _discriminated(typing.get_args(base), field)
        new = fast(base)
        return tp if new is base else Annotated[(new, *metadata)]
    if origin is None or origin is Literal:
        return tp
    args = typing.get_args(tp)
    new_args = tuple(fast(arg) for arg in args)
    if all(new is old for new, old in zip(new_args, args)):
        return tp
    if origin in _UNIONS:
        return Union[new_args]
    return typing.get_origin(tp)[new_args]


def adapter(union: Any) -> TypeAdapter:
    """A TypeAdapter of one of `openai`'s top-level event unions (see the module)."""
    return TypeAdapter(fast(union))


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
    """The one value a model's Literal field can take (None if the field is not such a Literal)."""
    info = cls.model_fields.get(field)
    if info is None or typing.get_origin(info.annotation) is not Literal:
        return None
    values = typing.get_args(info.annotation)
    return values[0] if len(values) == 1 else None


def _discriminated(members: tuple, field: str) -> Any:
    """The union of `members` discriminated on `field`, and on a second Literal field for members that
    share a value of `field`. Smart mode, as before, where the members cannot be told apart so."""
    optional = type(None) in members
    models = [m for m in members if m is not type(None)]
    if not all(isinstance(m, type) and issubclass(m, BaseModel) for m in models):
        return Union[tuple(fast(m) for m in members)]
    values = [_literal(m, field) for m in models]
    shared = {value for value, count in Counter(values).items() if count > 1}
    second = None
    if shared:
        alike = [(m, value) for m, value in zip(models, values) if value in shared]
        second = next((name for name in alike[0][0].model_fields if name != field
                       and all(_literal(m, name) is not None for m, _ in alike)
                       and len({(value, _literal(m, name)) for m, value in alike}) == len(alike)), None)
    if None in values or (shared and second is None):
        return Union[tuple(fast(m) for m in members)]

    if not shared:
        union = Annotated[Union[tuple(fast(m) for m in models)], Discriminator(field)]
        return Union[union, None] if optional else union

    def discriminator(data: Any) -> Any:
        get = data.get if isinstance(data, dict) else lambda name: getattr(data, name, None)
        value = get(field)
        if not isinstance(value, str):
            return None  # pydantic's "unable to extract tag": a ValidationError, as for any bad input
        return f"{value}/{get(second)}" if value in shared else value

    tagged = tuple(Annotated[fast(m), Tag(f"{value}/{_literal(m, second)}" if value in shared else str(value))]
                   for m, value in zip(models, values))
    union = Annotated[Union[tagged], Discriminator(discriminator)]
    return Union[union, None] if optional else union


_server_events = adapter(RealtimeServerEvent)
_client_events = adapter(RealtimeClientEvent)


def parse_server_event(raw: str | bytes) -> Any:
    """A server event as its `openai.types.realtime` model (ValidationError if it is none of them)."""
    return _server_events.validate_json(raw)


def validate_client_event(event: dict) -> Any:
    """The `openai.types.realtime` model of a client event we are about to send."""
    return _client_events.validate_python(event)
