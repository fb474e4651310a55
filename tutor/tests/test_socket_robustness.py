"""The learner's socket under bad input, handler crashes and floods (issue: the production shape holds).

Through the real ASGI application with an in-process simulator as upstream, and, for the flood, a
real Daphne process whose memory is measured before and after.
"""

import asyncio
import json

import pytest
import websockets
from channels.testing import WebsocketCommunicator
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from assessments.models import TutorSession
from config.asgi import application
from tutor.realtime import wire
from tutor.runtime.session import TutorSessionRuntime
from tutor.testing.realtime_client import start_simulator

from .live import daphne_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def learner_headers(session_cookie_headers, learner_user):
    return session_cookie_headers(learner_user)


@pytest.fixture
async def upstream(settings):
    async with start_simulator(pace=0) as sim:
        settings.PARLA_REALTIME_URL = sim.url
        yield sim


async def started(headers):
    communicator = WebsocketCommunicator(application, "/ws/tutor/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from())["state"] == "ready"
    await communicator.send_json_to({"type": "session.start"})
    await next_of_type(communicator, "level")
    return communicator


async def next_of_type(communicator, kind, timeout=5):
    """The next JSON event of `kind` (assistant audio frames and other events are passed over)."""
    async with asyncio.timeout(timeout):
        while True:
            output = await communicator.receive_output(timeout=timeout)
            if output["type"] == "websocket.close":
                raise AssertionError(f"closed with {output.get('code')} while waiting for {kind}")
            if output.get("text") and json.loads(output["text"])["type"] == kind:
                return json.loads(output["text"])


@pytest.mark.parametrize(
    "frame, code",
    [
        (json.dumps({"type": "answer.text", "text": "hola\x00"}), "bad_field"),
        ('{"type": "answer.text", "text": "hola \\ud800"}', "bad_field"),
        ('{"type": "answer.text", "text": ' + "[" * 2000 + "]" * 2000 + "}", "malformed"),
    ],
    ids=["nul", "lone-surrogate", "deep-nesting"],
)
async def test_crash_inputs_get_one_error_and_the_session_goes_on(upstream, learner_headers, frame, code):
    communicator = await started(learner_headers)
    try:
        await communicator.send_to(text_data=frame)
        assert (await next_of_type(communicator, "error"))["code"] == code
        await communicator.send_json_to({"type": "answer.text", "text": "Me llamo Ana."})
        said = await next_of_type(communicator, "transcript")
        while said["role"] != "learner":
            said = await next_of_type(communicator, "transcript")
        assert said["text"] == "Me llamo Ana."  # the connection and the session are still alive
    finally:
        await communicator.disconnect()


async def test_an_unexpected_exception_in_a_handler_ends_the_session_cleanly(
    upstream, learner_headers, monkeypatch
):
    async def broken(self, text):
        raise RuntimeError("a bug")

    monkeypatch.setattr(TutorSessionRuntime, "answer_text", broken)
    communicator = await started(learner_headers)
    await communicator.send_json_to({"type": "answer.text", "text": "hola"})
    error = await next_of_type(communicator, "error")
    assert error["code"] == "session_error" and "a bug" not in error["message"]
    closed = await communicator.receive_output(timeout=5)
    while closed["type"] != "websocket.close":
        closed = await communicator.receive_output(timeout=5)
    assert closed["code"] == 1011
    async with asyncio.timeout(5):
        while upstream.connections:  # no upstream session outlives its learner
            await asyncio.sleep(0.02)
    session = await TutorSession.objects.aget()
    assert session.end_reason == "server_error" and session.ended_at is not None
    await communicator.wait()


async def drain(communicator):
    """Error codes the server sent until it closed or went quiet; and the close code (or None)."""
    codes = []
    while not await communicator.receive_nothing(timeout=0.5):
        output = await communicator.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            return codes, output["code"]
        if output.get("text") and json.loads(output["text"])["type"] == "error":
            codes.append(json.loads(output["text"])["code"])
    return codes, None


async def test_a_flood_is_rate_limited_then_closed_with_4429(upstream, learner_headers):
    communicator = await started(learner_headers)
    report = {"type": "playback.report", "item_id": "x", "played_ms": 0}
    for _ in range(wire.CONTROL_BURST + 20):
        await communicator.send_json_to(report)
    codes, closed = await drain(communicator)
    assert closed is None and 5 <= len(codes) <= 20 and set(codes) == {"rate_limited"}

    for _ in range(wire.MAX_REFUSED):
        await communicator.send_to(text_data="not json")
    more, closed = await drain(communicator)
    assert closed == wire.CLOSE_TOO_MANY
    assert len(codes) + len(more) == wire.MAX_REFUSED  # one error each, then no more replies
    async with asyncio.timeout(5):
        while upstream.connections:
            await asyncio.sleep(0.02)
    await communicator.wait()


async def test_written_answers_are_refused_once_placement_has_ended(upstream, learner_headers):
    communicator = await started(learner_headers)
    try:
        await communicator.send_json_to({"type": "session.stop"})
        await next_of_type(communicator, "assessment")
        await communicator.send_json_to({"type": "answer.text", "text": "¿Y ahora?"})
        assert (await next_of_type(communicator, "error"))["code"] == "placement_ended"
    finally:
        await communicator.disconnect()


frames = st.one_of(
    st.binary(min_size=1, max_size=64).map(lambda b: ("bytes", b)),  # the test tool cannot send empty frames
    st.text(min_size=1, max_size=64).map(lambda s: ("text", s)),
    st.fixed_dictionaries(
        # session.start is left out: starting a session is not what this test fuzzes
        {"type": st.sampled_from(sorted(set(wire.CONTROL_MESSAGES) - {"session.start"}) + ["nope", ""])},
        optional={
            "text": st.one_of(st.text(max_size=30), st.integers(), st.none()),
            "request_id": st.one_of(st.text(max_size=80), st.integers()),
            "item_id": st.one_of(st.text(max_size=80), st.none(), st.booleans()),
            "played_ms": st.one_of(st.integers(min_value=-5, max_value=10**6), st.text(max_size=3)),
        },
    ).map(lambda d: ("text", json.dumps(d))),
)


@hsettings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(frames, min_size=1, max_size=12))
async def test_fuzzed_frames_get_clear_errors_and_never_crash_the_socket(learner_headers, sequence):
    """Random frames before the session starts: every reply is a known event and the socket stays open."""
    communicator = WebsocketCommunicator(application, "/ws/tutor/", headers=learner_headers)
    connected, _ = await communicator.connect()
    assert connected
    try:
        await communicator.receive_json_from()
        for kind, payload in sequence:
            await communicator.send_to(**{f"{kind}_data": payload})
        await communicator.send_json_to({"type": "playback.report", "item_id": "x", "played_ms": 1})
        while not await communicator.receive_nothing(timeout=0.2):
            event = await communicator.receive_json_from()
            assert event["type"] in ("error", "state") and (event["type"] != "error" or event["code"])
    finally:
        await communicator.disconnect()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


@pytest.mark.services
def test_a_client_that_floods_and_never_reads_is_closed_and_the_server_memory_stays_flat(make_user):
    from .test_end_to_end import login_cookie

    user = make_user("flooder", learner=True)
    cookie = login_cookie(user)

    async def flood(base_url):
        url = base_url.replace("http", "ws") + "/ws/tutor/"
        headers = {"Cookie": cookie, "Origin": base_url}
        # max_queue=1: the client reads nothing it is not made to; the server's replies pile up unread.
        async with websockets.connect(url, additional_headers=headers, max_queue=1) as ws:
            try:
                for _ in range(20_000):
                    await ws.send("{" * 7 + "not json")
            except websockets.ConnectionClosed:
                pass
            try:
                async with asyncio.timeout(10):
                    async for _ in ws:
                        pass
            except websockets.ConnectionClosed:
                pass
            return ws.close_code

    async def home_responds(base_url):
        reader, writer = await asyncio.open_connection("127.0.0.1", int(base_url.rsplit(":", 1)[1]))
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nConnection: close\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(2):
            head = await reader.readline()
        writer.close()
        return head

    with daphne_server(realtime_url="ws://127.0.0.1:9/v1/realtime", redis_url=None) as base_url:
        asyncio.run(home_responds(base_url))  # warm up: the first request imports the views
        before = rss_kib(base_url.pid)
        code = asyncio.run(flood(base_url))
        after = rss_kib(base_url.pid)
        head = asyncio.run(home_responds(base_url))
    assert code == wire.CLOSE_TOO_MANY
    assert after - before < 20 * 1024, f"server grew by {(after - before) / 1024:.1f} MiB"
    assert head.startswith(b"HTTP/1.1 200")
