"""Numbers from the browser at their edges, and the close codes the server sends (issue 27, items 1 and 5).

A played position is bounded before it is used: past what was sent it is the item's length, past any
item's possible length it is refused. A failure in any task of a session ends that session with a close
code Daphne sends (autobahn refuses RFC 6455's 1011 and 1013 from an application). The live tests run a
real Daphne process, as the browser meets it.
"""

import asyncio
import contextlib
import json

import pytest
import websockets
from autobahn.twisted.websocket import WebSocketServerProtocol

from assessments.models import TutorSession
from tutor.realtime import wire
from tutor.realtime.playback import Playback
from tutor.runtime.events import TutorEvents

from .live import ThreadedSimulator, daphne_server
from .test_socket_robustness import (  # noqa: F401 (fixtures)
    ended_by_a_server_error, learner_headers, next_of_type, started, upstream, wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

# Numbers at the edges, as JSON texts: huge, negative, fractional, not finite (Python's json reads NaN,
# Infinity and 1e400 as floats), NaN-like strings, booleans, and the bounds themselves.
EDGE_NUMBERS = [
    "0", "1", "-1", "-0", "0.5", "-0.0", "1e3", "1e400", "-1e400", "NaN", "Infinity", "-Infinity",
    "1" + "0" * 400, "-" + "9" * 400, str(2**63), str(2**64 + 1), str(2**53 + 1), str(wire.MAX_PLAYED_MS),
    str(wire.MAX_PLAYED_MS + 1), '"NaN"', '"Infinity"', '"-1"', '"1e400"', '""', "true", "false", "null",
    "[1]", '{"n": 1}',
]


def frame(kind: str, fields: dict[str, str]) -> str:
    """A control message with `fields` given as raw JSON texts (so NaN and 10**400 go out verbatim)."""
    body = ", ".join(f'"{name}": {raw}' for name, raw in fields.items())
    return f'{{"type": "{kind}"{", " if body else ""}{body}}}'


def test_a_played_position_past_the_item_is_its_length_and_absurd_ones_are_refused():
    playback = Playback(margin=2.0)
    playback.sent("item_1", "tutor", 1500.0, now=0.0)
    assert playback.report("item_1", "progress", wire.MAX_PLAYED_MS, now=0.1)
    assert playback.items["item_1"].played_ms == 1500  # no more than was sent
    assert playback.deadline(0.1) == pytest.approx(2.1)  # over at its length, plus the margin
    playback.flush_answered("item_1", 10**9)
    assert playback.items["item_1"].played_ms == 1500
    for absurd in (wire.MAX_PLAYED_MS + 1, 10**400):
        with pytest.raises(wire.ClientError) as refused:
            wire.parse_control(json.dumps({"type": "playback.report", "item_id": "item_1", "played_ms": absurd}))
        assert refused.value.code == "bad_field"


@pytest.mark.parametrize("code", [wire.CLOSE_SERVER_ERROR, wire.CLOSE_TRY_AGAIN_LATER, wire.CLOSE_TOO_MANY,
                                  wire.CLOSE_NOT_READING, wire.CLOSE_SUPERSEDED, wire.CLOSE_FORBIDDEN,
                                  wire.CLOSE_NOT_AUTHENTICATED])
def test_every_close_code_parla_sends_is_one_daphne_sends(code):
    """autobahn's sendClose (Daphne's `websocket.close`) raises for anything but 1000 and 3000-4999."""
    protocol = WebSocketServerProtocol()
    sent = []
    protocol.sendCloseFrame = lambda **frame: sent.append(frame)
    protocol.sendClose(code=code)
    assert sent and sent[0]["code"] == code


async def test_a_failed_session_task_ends_the_session_with_a_code_daphne_sends(upstream, learner_headers, monkeypatch):
    async def broken(self):
        raise RuntimeError("a bug in a task")

    monkeypatch.setattr(TutorEvents, "follow_playback", broken)
    communicator = await started(learner_headers)
    await ended_by_a_server_error(communicator, upstream)


async def test_a_failed_upstream_event_handler_ends_the_session_with_a_code_daphne_sends(
    upstream, learner_headers, monkeypatch
):
    async def broken(self, event):
        raise RuntimeError("a bug in a handler")

    monkeypatch.setattr(TutorEvents, "on_response_created", broken)
    communicator = await started(learner_headers)
    await ended_by_a_server_error(communicator, upstream)


async def current_item(communicator) -> str:
    return (await next_of_type(communicator, "audio.start"))["item_id"]


async def replies_until_quiet(communicator) -> list[dict]:
    """Every JSON event until the server goes quiet; fails on a close."""
    events = []
    while not await communicator.receive_nothing(timeout=0.3):
        output = await communicator.receive_output(timeout=5)
        assert output["type"] != "websocket.close", f"closed with {output.get('code')}"
        if output.get("text"):
            events.append(json.loads(output["text"]))
    return events


FUZZED_FIELDS = [
    ("playback.report", "played_ms"), ("playback.report", "item_id"), ("playback.report", "kind"),
    ("playback.flushed", "played_ms"), ("playback.flushed", "request_id"), ("playback.flushed", "item_id"),
    ("answer.text", "text"), ("session.start", "self_assessment"),
]


def taken_as_position(raw: str) -> bool:
    value = json.loads(raw)
    return type(value) is int and 0 <= value <= wire.MAX_PLAYED_MS


@pytest.mark.parametrize("kind, field", FUZZED_FIELDS, ids=[f"{k}.{f}" for k, f in FUZZED_FIELDS])
async def test_numbers_at_the_edges_in_every_field_end_no_session(upstream, learner_headers, kind, field):
    """Each edge number in one field of a message that is otherwise valid, against the item playing now,
    with the session running: each is taken or refused with one error event, the socket stays open, the
    session goes on (a written answer is still heard) and nothing in it failed."""
    communicator = await started(learner_headers)
    try:
        item_id = await current_item(communicator)
        valid = {
            "playback.report": {"item_id": json.dumps(item_id), "played_ms": "100", "kind": '"progress"'},
            "playback.flushed": {"request_id": '"flush_1"', "item_id": json.dumps(item_id), "played_ms": "100"},
            "answer.text": {"text": '"hola"'},
            "session.start": {},
        }[kind]
        for raw in EDGE_NUMBERS:
            await communicator.send_to(text_data=frame(kind, {**valid, field: raw}))
        events = await replies_until_quiet(communicator)
        errors = [e for e in events if e["type"] == "error"]
        assert not [e for e in errors if e["code"] == "session_error"], errors
        expected = {"bad_field", "missing_field", "unknown_request", "already_started", "rate_limited", "placement_ended"}
        assert all(e["code"] in expected for e in errors), errors
        if kind == "playback.report" and field == "played_ms":
            # the huge, negative, fractional and non-numeric ones are refused; 0..MAX_PLAYED_MS are taken
            assert len(errors) == len([raw for raw in EDGE_NUMBERS if not taken_as_position(raw)])
        if kind != "answer.text":  # (written answers "NaN", "-1" ... were taken and rated: placement may end)
            await communicator.send_json_to({"type": "answer.text", "text": "Me llamo Ana."})
            said = await next_of_type(communicator, "transcript")
            while said["role"] != "learner":
                said = await next_of_type(communicator, "transcript")
            assert said["text"] == "Me llamo Ana."  # the connection and the session are alive
            session = await TutorSession.objects.aget()
            assert session.ended_at is None
        assert not [e for e in await replies_until_quiet(communicator) if e.get("code") == "session_error"]
        session = await TutorSession.objects.aget()
        assert session.end_reason != "server_error"
    finally:
        await communicator.disconnect()


# --- through a live Daphne ---------------------------------------------------------------------------


def login(make_user, name: str, **fields) -> str:
    from .test_end_to_end import login_cookie

    return login_cookie(make_user(name, learner=True, **fields))


async def open_tutor(base_url: str, cookie: str):
    headers = {"Cookie": cookie, "Origin": base_url}
    ws = await websockets.connect(base_url.replace("http", "ws") + "/ws/tutor/", additional_headers=headers, max_size=None)
    assert json.loads(await ws.recv())["state"] == "ready"
    return ws


async def read_until(ws, predicate, timeout: float = 10) -> dict:
    async with asyncio.timeout(timeout):
        async for raw in ws:
            if isinstance(raw, str) and predicate(event := json.loads(raw)):
                return event
    raise AssertionError("closed before the event came")


async def close_code(ws, timeout: float = 10) -> int | None:
    """The close code the server sent (None: the connection dropped without a close frame)."""
    with contextlib.suppress(websockets.ConnectionClosed):
        async with asyncio.timeout(timeout):
            async for _ in ws:
                pass
    received = ws.protocol.close_rcvd
    return received.code if received else None


@pytest.mark.services
@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_live_numbers_frames_and_refusals_get_the_documented_answers(make_user, server):
    """Through Daphne and Uvicorn (`python -m tutor.serve`): a played position of 10**400 is refused and the session goes on; a frame over
    1 MiB is closed with 1009 (a close frame, not a dropped connection); a refusal at capacity arrives
    with its close code."""
    cookie = login(make_user, "edges")
    other = login(make_user, "crowd")

    async def run(base_url):
        ws = await open_tutor(base_url, cookie)
        await ws.send(json.dumps({"type": "session.start"}))
        item = await read_until(ws, lambda e: e["type"] == "audio.start")
        await ws.send(f'{{"type": "playback.report", "item_id": "{item["item_id"]}", "played_ms": {10**400}}}')
        refused = await read_until(ws, lambda e: e["type"] == "error")
        await ws.send(json.dumps({"type": "answer.text", "text": "Me llamo Ana."}))
        said = await read_until(ws, lambda e: e["type"] in ("error", "transcript") and e.get("role") != "tutor")
        full = await open_tutor(base_url, other)  # while the first session runs
        await full.send(json.dumps({"type": "session.start"}))
        at_capacity = await read_until(full, lambda e: e["type"] == "error")
        capacity_code = await close_code(full)
        await ws.send(b"\0" * (wire.MAX_FRAME_BYTES + 2))  # over the server's limit
        oversized = await close_code(ws)
        ended = await wait_until(lambda: TutorSession.objects.filter(ended_at__isnull=False).first(), 10, "ended")
        return refused, said, oversized, at_capacity, capacity_code, ended

    with ThreadedSimulator(pace=0.0, seed=5) as sim:
        with daphne_server(realtime_url=sim.url, redis_url=None, extra_env={"PARLA_MAX_SESSIONS_PER_PROCESS": "1"},
                           server=server) as url:
            refused, said, oversized, at_capacity, capacity_code, ended = asyncio.run(run(url))
            left_open = sim.wait_all_closed(10)
    assert refused["code"] == "bad_field"
    assert said["type"] == "transcript" and said["text"] == "Me llamo Ana."
    assert oversized == wire.CLOSE_MESSAGE_TOO_BIG
    assert at_capacity["code"] == "at_capacity" and capacity_code == wire.CLOSE_TRY_AGAIN_LATER
    assert left_open == 0
    assert ended.end_reason == TutorSession.EndReason.LEARNER_LEFT
