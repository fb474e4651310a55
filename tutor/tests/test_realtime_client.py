"""RealtimeClient against the simulator: confirmed requests, error correlation, timeouts, closing."""

import asyncio
import base64
import json

import pytest
from pydantic import ValidationError

from tutor import persona
from tutor.realtime.client import RealtimeClient, RealtimeClosed, RealtimeRequestError, validate_client_event, with_model
from tutor.testing.realtime_client import start_simulator


@pytest.fixture
async def sim():
    async with start_simulator() as simulator:
        yield simulator


async def connected(sim, **kwargs) -> RealtimeClient:
    client = RealtimeClient(sim.url, model="gpt-realtime", validate_sent=True, **kwargs)
    await client.connect()
    return client


def test_with_model_keeps_other_query_parameters():
    assert with_model("ws://h/v1/realtime?pace=0", "gpt-realtime") == "ws://h/v1/realtime?pace=0&model=gpt-realtime"
    assert with_model("ws://h/v1/realtime", None) == "ws://h/v1/realtime"


async def test_connect_returns_session_created_and_events_get_ids(sim):
    client = await connected(sim)
    try:
        first = await client.send({"type": "input_audio_buffer.clear"})
        second = await client.send({"type": "input_audio_buffer.clear"})
        assert first != second and first.startswith("evt_parla_")
        assert client.tracker.session_id
    finally:
        await client.close()


async def test_request_returns_the_confirming_event(sim):
    client = await connected(sim)
    try:
        updated = await client.request(
            {"type": "session.update", "session": persona.narrator_session_config("sage")}, "session.updated", 5
        )
        assert updated.type == "session.updated"
        assert client.tracker.voice == "sage"
    finally:
        await client.close()


async def test_error_naming_our_event_id_fails_that_request(sim):
    client = await connected(sim)
    try:
        with pytest.raises(RealtimeRequestError) as info:
            await client.request({"type": "response.cancel"}, "response.done", 5)
        assert info.value.code == "response_cancel_not_active"
        assert info.value.error.message == "Cancellation failed: no active response found"
        assert client.tracker.error_codes == ["response_cancel_not_active"]
    finally:
        await client.close()


async def test_tolerated_error_is_counted_and_never_reaches_the_handler(sim):
    seen = []

    async def handler(event):
        seen.append(event.type)

    client = await connected(sim, handler=handler)
    try:
        with pytest.raises(RealtimeRequestError):
            await client.request(
                {"type": "response.cancel"}, "response.done", 5, tolerate=frozenset({"response_cancel_not_active"})
            )
        assert client.tolerated_errors == 1
        assert "error" not in seen
    finally:
        await client.close()


async def test_unclaimed_errors_go_to_the_handler(sim):
    seen = []

    async def handler(event):
        seen.append(event)

    client = await connected(sim, handler=handler)
    try:
        await client.send({"type": "conversation.item.delete", "item_id": "item_nope"})
        error = await client.wait_for("error", 5)
        assert error.error.code is not None
        await asyncio.sleep(0)  # let the reader hand it on
        assert any(e.type == "error" for e in seen)
    finally:
        await client.close()


async def test_a_request_nothing_answers_times_out(sim):
    client = await connected(sim)
    try:
        with pytest.raises(TimeoutError):
            await client.request({"type": "input_audio_buffer.clear"}, "conversation.item.truncated", 0.2)
        assert client._waiters == []  # nothing left waiting
    finally:
        await client.close()


async def test_waiters_fail_when_the_upstream_closes(sim):
    client = await connected(sim)
    waiting = asyncio.create_task(client.wait_for("response.done", 10))
    await asyncio.sleep(0)
    for connection in list(sim.connections):
        connection.drop("test")
    with pytest.raises(RealtimeClosed):
        await waiting
    await client.close()
    with pytest.raises(RealtimeClosed):
        await client.send({"type": "input_audio_buffer.clear"})


async def test_close_leaves_no_task_running(sim):
    before = set(asyncio.all_tasks())
    client = await connected(sim)
    assert any(t.get_name() == "realtime-reader-tutor" for t in asyncio.all_tasks())
    await client.close()
    await client.close()  # idempotent
    # (the simulator's own server-side handler may still be finishing its close: not ours)
    ours = [t for t in asyncio.all_tasks() - before if t.get_name().startswith("realtime-reader")]
    assert ours == []
    assert client.closed.is_set()


@pytest.mark.parametrize(
    "event",
    [
        {"type": "session.update", "session": persona.frozen_session_update()},
        {"type": "session.update", "session": persona.voice_session_update("alloy")},
        {"type": "session.update", "session": persona.narrator_session_config("alloy")},
        {"type": "response.create"},
        {"type": "response.create", "response": persona.summary_response("You reached B1.")},
        {"type": "response.cancel", "response_id": "resp_1"},
        {"type": "conversation.item.truncate", "item_id": "item_1", "content_index": 0, "audio_end_ms": 10},
        {"type": "input_audio_buffer.clear"},
        {"type": "input_audio_buffer.append", "audio": "AAAA"},
        {"type": "conversation.item.create",
         "item": {"type": "function_call_output", "call_id": "call_1", "output": "{\"ok\": true}"}},
        {"type": "conversation.item.create",
         "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hola"}]}},
    ],
)
def test_every_event_parla_sends_is_a_valid_client_event(event):
    assert validate_client_event({**event, "event_id": "evt_1"}).type == event["type"]


def test_invalid_client_event_is_refused_before_sending():
    with pytest.raises(ValidationError):
        validate_client_event({"type": "conversation.item.truncate", "item_id": "x"})


# --- the one parse path: the openai union, discriminated on `type` ------------------------------------


def _schema_nodes(adapter):
    """Every node of a TypeAdapter's pydantic core schema, depth first, and a resolver of its refs."""
    schema = adapter.core_schema
    definitions = {d["ref"]: d for d in schema.get("definitions", []) if "ref" in d}

    def resolve(s):
        while s.get("type") == "definition-ref":
            s = definitions[s["schema_ref"]]
        return s

    nodes = []

    def walk(s):
        if isinstance(s, dict):
            nodes.append(s)
            for value in s.values():
                walk(value)
        elif isinstance(s, (list, tuple)):
            for value in s:
                walk(value)

    walk(schema)
    return nodes, resolve


def _tagged_union_choices(adapter) -> dict:
    """tag -> model class of a TypeAdapter's (first, outermost) discriminated union."""
    nodes, resolve = _schema_nodes(adapter)
    union = next(node for node in nodes if node.get("type") == "tagged-union")
    return {tag: resolve(choice)["cls"] for tag, choice in union["choices"].items()}


def test_every_server_event_type_is_parsed_by_the_model_named_by_its_type():
    import typing

    from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent

    from tutor.realtime.schemas import _client_events, _server_events

    for union, adapter in ((RealtimeServerEvent, _server_events), (RealtimeClientEvent, _client_events)):
        members = typing.get_args(typing.get_args(union)[0])
        expected = {typing.get_args(m.model_fields["type"].annotation)[0]: m for m in members}
        choices = _tagged_union_choices(adapter)
        assert choices.keys() == expected.keys() and len(expected) == len(members)
        # the openai class itself, or (where a nested union is re-annotated) a subclass of it
        assert all(issubclass(choices[tag], cls) for tag, cls in expected.items()), choices


def _as_openai(value):
    """A parsed value with every model replaced by (its `openai` class, its fields), at any depth: what
    the parse path must keep equal to the openai union's, whichever subclass carries it."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        cls = next(k for k in type(value).__mro__ if k.__module__.startswith("openai."))
        fields = {name: _as_openai(getattr(value, name)) for name in type(value).model_fields}
        return cls, fields, _as_openai(value.model_extra or {})
    if isinstance(value, (list, tuple)):
        return [_as_openai(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_openai(v) for k, v in value.items()}
    return value


async def test_two_cuts_of_one_item_at_once_send_one_truncate(sim):
    """The barge-in's truncate and the handover's can meet: the first cut wins, the second sends
    nothing (the API would refuse it: "Audio content of 0ms is already shorter than 1941ms")."""
    client = await connected(sim)
    try:
        await client.request({"type": "session.update", "session": persona.narrator_session_config("sage")},
                             "session.updated", 5)
        done = await client.request({"type": "response.create"}, "response.done", 10)
        item_id = done.response.output[0].id
        assert client.tracker.item(item_id).audio_ms > 300
        cuts = await asyncio.gather(client.truncate_played(item_id, 0, 5), client.truncate_played(item_id, 300, 5))
        assert cuts == [True, False]
        assert client.tracker.item(item_id).truncated_at_ms == 0
        assert client.tracker.error_codes == []
    finally:
        await client.close()


async def test_server_events_parse_to_the_same_models_as_the_openai_union_did(sim):
    """Every event of a session (created, updated, a spoken response, input audio, truncate, an error)
    parses to the same model, equal field by field, as through TypeAdapter(RealtimeServerEvent)."""
    import base64
    import json

    from openai.types.realtime import RealtimeServerEvent
    from pydantic import TypeAdapter

    from tutor.realtime.client import parse_server_event
    from tutor.testing.realtime_client import RealtimeTestClient

    smart = TypeAdapter(RealtimeServerEvent)
    async with RealtimeTestClient.connect(sim.url) as client:
        await client.send({"type": "session.update", "session": persona.narrator_session_config("sage")})
        await client.collect_until("session.updated")
        await client.send({"type": "response.create"})
        done = (await client.collect_until("response.done"))[-1]
        item_id = done["response"]["output"][0]["id"]
        await client.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 10})
        await client.collect_until(lambda e: e["type"] in ("conversation.item.truncated", "error"))
        await client.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\0\0" * 2400).decode()})
        await client.send({"type": "input_audio_buffer.commit"})
        await client.collect_until(lambda e: e["type"] in ("input_audio_buffer.committed", "error"))
        await client.send({"type": "response.cancel"})
        await client.collect_until("error")
        events = client.received
    kinds = {e["type"] for e in events}
    assert {"session.created", "response.output_audio.delta", "response.done", "error"} <= kinds, kinds
    for event in events:
        raw = json.dumps(event)
        parsed = parse_server_event(raw)
        expected = smart.validate_json(raw)
        assert _as_openai(parsed) == _as_openai(expected), event["type"]


# Every kind of conversation item the `openai` models know, as the API sends it (shapes from the
# models' own fields; the API reference's examples: platform.openai.com/docs/api-reference/realtime-server-events).
_ITEMS = [
    {"id": "item_1", "type": "message", "role": "system", "content": [{"type": "input_text", "text": "Be brief."}]},
    {"id": "item_2", "type": "message", "role": "user", "status": "completed",
     "content": [{"type": "input_audio", "transcript": "Hola, me llamo Ana."}]},
    {"id": "item_3", "type": "message", "role": "assistant", "status": "completed",
     "content": [{"type": "output_audio", "transcript": "Where are you from?"}]},
    {"id": "item_4", "type": "function_call", "call_id": "call_1", "name": "report_ceiling",
     "arguments": "{\"level\": \"A2\"}", "status": "completed"},
    {"id": "item_5", "type": "function_call_output", "call_id": "call_1", "output": "{\"ok\": true}"},
    {"id": "item_6", "type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True},
    {"id": "item_7", "type": "mcp_list_tools", "server_label": "dict",
     "tools": [{"name": "lookup", "input_schema": {"type": "object"}}]},
    {"id": "item_8", "type": "mcp_call", "server_label": "dict", "name": "lookup", "arguments": "{}",
     "error": {"type": "http_error", "code": 500, "message": "down"}},
    {"id": "item_9", "type": "mcp_approval_request", "server_label": "dict", "name": "lookup", "arguments": "{}"},
]


def _item_events(item: dict) -> list[dict]:
    return [
        {"type": "conversation.item.added", "event_id": "event_1", "previous_item_id": None, "item": item},
        {"type": "conversation.item.done", "event_id": "event_2", "previous_item_id": None, "item": item},
        {"type": "response.output_item.done", "event_id": "event_3", "response_id": "resp_1", "output_index": 0,
         "item": item},
        {"type": "response.done", "event_id": "event_4",
         "response": {"object": "realtime.response", "id": "resp_1", "status": "completed", "output": [item]}},
    ]


def test_every_kind_of_conversation_item_parses_to_the_model_the_openai_union_gives():
    """The item union nested in the events is discriminated on `type`, and on `role` for the three
    messages: each kind lands in the same `openai` class, field for field, as through smart mode."""
    import json

    from openai.types.realtime import RealtimeServerEvent
    from pydantic import TypeAdapter

    from tutor.realtime.schemas import parse_server_event

    smart = TypeAdapter(RealtimeServerEvent)
    classes = set()
    for item in _ITEMS:
        for event in _item_events(item):
            raw = json.dumps(event)
            parsed, expected = parse_server_event(raw), smart.validate_json(raw)
            assert _as_openai(parsed) == _as_openai(expected), event
            parsed_item = parsed.response.output[0] if event["type"] == "response.done" else parsed.item
            classes.add(type(parsed_item).__name__)
    assert len(classes) == len(_ITEMS), classes  # nine kinds, nine classes: no two collapsed into one
    assert {"RealtimeConversationItemSystemMessage", "RealtimeConversationItemUserMessage",
            "RealtimeConversationItemAssistantMessage"} <= {c for c in classes}


@pytest.mark.parametrize("item", [
    {"id": "item_1", "type": "message", "role": "wizard", "content": []},  # no such role
    {"id": "item_1", "type": "message", "content": []},  # a message without a role
    {"id": "item_1", "type": ["message"], "role": "user", "content": []},  # a type that is not a string
    {"id": "item_1", "type": "hologram"},  # no such item
])
def test_an_item_no_openai_model_takes_is_a_validation_error(item):
    import json

    from tutor.realtime.schemas import parse_server_event

    for event in _item_events(item):
        with pytest.raises(ValidationError):
            parse_server_event(json.dumps(event))


def test_the_item_union_nested_in_the_events_is_discriminated_not_tried_in_turn():
    """No union of item models is left for pydantic's smart mode (each member tried in turn: 21 us an
    item against 2 us, tutor/realtime/schemas.py); the nine kinds are tagged unions, messages by role."""
    import typing

    from openai.types.realtime.conversation_item import ConversationItem

    from tutor.realtime.schemas import _client_events, _server_events

    item_classes = set(typing.get_args(typing.get_args(ConversationItem)[0]))
    for adapter in (_server_events, _client_events):
        nodes, resolve = _schema_nodes(adapter)
        tag_sets = [set(node["choices"]) for node in nodes if node.get("type") == "tagged-union"]
        smart_item_unions = [
            node for node in nodes if node.get("type") == "union"
            and sum(resolve(c[0] if isinstance(c, tuple) else c).get("cls") in item_classes for c in node["choices"]) > 1
        ]
        assert not smart_item_unions
        assert {"message", "function_call", "function_call_output", "mcp_approval_response", "mcp_list_tools",
                "mcp_call", "mcp_approval_request"} in tag_sets
        assert {"system", "user", "assistant"} in tag_sets  # the three messages, by role


def test_an_unknown_event_type_is_still_a_validation_error():
    from tutor.realtime.client import parse_server_event

    with pytest.raises(ValidationError):
        parse_server_event('{"type": "response.something_new", "event_id": "event_1"}')
    with pytest.raises(ValidationError):
        parse_server_event('{"event_id": "event_1"}')


async def test_only_the_first_audio_append_is_validated(sim, monkeypatch):
    from tutor.realtime import client as client_module

    validated = []
    monkeypatch.setattr(client_module, "validate_client_event", lambda e: validated.append(e["type"]))
    client = await connected(sim)
    try:
        for _ in range(3):
            await client.send_audio(b"\0\0" * 2400)
        await client.send({"type": "input_audio_buffer.clear"})
        assert validated == ["input_audio_buffer.append", "input_audio_buffer.clear"]
    finally:
        await client.close()


async def test_the_upstream_socket_is_not_compressed(sim):  # base64 PCM: bench/hotpath.py
    client = await connected(sim)
    try:
        assert "Sec-WebSocket-Extensions" not in client._ws.request.headers  # permessage-deflate not offered
        assert client._ws.protocol.extensions == []
    finally:
        await client.close()


async def test_an_audio_append_written_by_hand_is_the_api_s_event_with_the_learner_s_audio(sim):
    """The hot path writes the append's JSON itself: it must still be a valid `input_audio_buffer.append`
    (the openai package's model), with a fresh event_id and exactly the audio given."""

    client = await connected(sim)
    written: list[str] = []
    write = client._write

    async def recording(text):
        written.append(text)
        await write(text)

    client._write = recording
    try:
        pcm = bytes(range(256)) * 37 + b"\xff\xfe"
        ids = [await client.send_audio(pcm) for _ in range(2)]
        events = [json.loads(text) for text in written]
        for event, event_id in zip(events, ids, strict=True):
            validate_client_event(event)  # raises on anything the API would not take
            assert event["type"] == "input_audio_buffer.append" and event["event_id"] == event_id
            assert base64.b64decode(event["audio"], validate=True) == pcm
        assert ids[0] != ids[1]
        await client.request({"type": "input_audio_buffer.clear"}, "input_audio_buffer.cleared", 5)  # still in sync
    finally:
        await client.close()
