"""The learner's socket under bad input, handler crashes and floods (issue: the production shape holds).

Through the real ASGI application with an in-process simulator as upstream, and, for the flood, a
real Daphne process whose memory is measured before and after.
"""

import asyncio
import contextlib
import json
import socket

import pytest
import websockets
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from assessments.models import TutorSession
from config.asgi import application
from tutor.realtime import wire
from tutor.runtime.session import TutorSessionRuntime
from tutor.testing.realtime_client import start_simulator
from tutor.testing.waits import until

from .live import ThreadedSimulator, daphne_server

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
    await ended_by_a_server_error(communicator, upstream)


async def ended_by_a_server_error(communicator, upstream):
    """Parla's words, then close 4500; the upstream session closed and the session row ended."""
    error = await next_of_type(communicator, "error")
    assert error["code"] == "session_error" and "a bug" not in error["message"]
    closed = await communicator.receive_output(timeout=5)
    while closed["type"] != "websocket.close":
        closed = await communicator.receive_output(timeout=5)
    assert closed["code"] == wire.CLOSE_SERVER_ERROR
    await until(lambda: not upstream.connections, 5, "no upstream session outlives its learner")
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
    # 20 over the burst, and the token session.start took (all 80 can be handled before one refills)
    assert closed is None and 5 <= len(codes) <= 21 and set(codes) == {"rate_limited"}

    for _ in range(wire.MAX_REFUSED):
        await communicator.send_to(text_data="not json")
    more, closed = await drain(communicator)
    assert closed == wire.CLOSE_TOO_MANY
    assert len(codes) + len(more) == wire.MAX_REFUSED  # one error each, then no more replies
    await until(lambda: not upstream.connections, 5, "the upstream sessions closed")
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
@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_a_client_that_floods_and_never_reads_is_closed_and_the_server_memory_stays_flat(make_user, server):
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

    with daphne_server(realtime_url="ws://127.0.0.1:9/v1/realtime", redis_url=None, server=server) as base_url:
        asyncio.run(home_responds(base_url))  # warm up: the first request imports the views
        before = rss_kib(base_url.pid)
        code = asyncio.run(flood(base_url))
        after = rss_kib(base_url.pid)
        head = asyncio.run(home_responds(base_url))
    assert code == wire.CLOSE_TOO_MANY
    assert after - before < 20 * 1024, f"server grew by {(after - before) / 1024:.1f} MiB"
    assert head.startswith(b"HTTP/1.1 200")


async def home_responds(base_url):
    reader, writer = await asyncio.open_connection("127.0.0.1", int(base_url.rsplit(":", 1)[1]))
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nConnection: close\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(2):
        head = await reader.readline()
    writer.close()
    return head


def session_of(user) -> TutorSession | None:
    return TutorSession.objects.filter(learner__user=user).order_by("-started_at").first()


async def wait_until(condition, timeout: float, what: str):
    """Poll the database from outside the server."""
    return await until(database_sync_to_async(condition), timeout, what)


async def first_session(base_url, user, cookie: str) -> None:
    """A session started and left once its rater is ready: what a server process loads once, for its
    first learner in a language (the offline rater's word lists, about 60 MiB), is then loaded."""
    headers = {"Cookie": cookie, "Origin": base_url}
    async with websockets.connect(base_url.replace("http", "ws") + "/ws/tutor/", additional_headers=headers) as ws:
        assert json.loads(await ws.recv())["state"] == "ready"
        await ws.send(json.dumps({"type": "session.start"}))

        async def read():  # this learner reads: its session is not ended for a full send queue meanwhile
            with contextlib.suppress(websockets.ConnectionClosed):
                async for _ in ws:
                    pass

        reader = asyncio.create_task(read())
        try:
            # (a one-time load of ~60 MiB: on a loaded 2-core machine it can take far longer than its 0.6 s)
            await wait_until(lambda: "rater word lists ready" in base_url.log_path.read_text(), 120, "rater ready")
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    await wait_until(lambda: (s := session_of(user)) is not None and s.ended_at is not None, 30, "first session ended")


def deaf_socket(port: int) -> socket.socket:
    """A client socket with a small receive buffer: once it stops reading, the server's buffer fills
    after kilobytes instead of the megabytes loopback's autotuned buffers would take."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


def established(sock: socket.socket) -> bool:
    """Whether the kernel still holds the TCP connection open (tcp_info's first byte, tcpi_state, is
    TCP_ESTABLISHED = 1; the server's abort or close moves it on, read or not)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == 1


@pytest.mark.services
@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_a_client_that_never_reads_while_the_tutor_speaks_is_closed_with_4008_and_released(make_user, server):
    """The tutor speaks 10 minutes of audio as fast as it can (about 29 MB of PCM); the learner reads
    nothing. Without a limit on the send queue Daphne buffers all of it and the session runs on;
    Uvicorn waits inside `send` and the session stops, with its upstream open."""
    from .test_end_to_end import login_cookie

    users = [make_user(f"deaf{i}", learner=True) for i in range(2)]
    first = make_user("first", learner=True)
    cookies = {user.pk: login_cookie(user) for user in [*users, first]}
    limits = {"PARLA_SEND_QUEUE_BYTES": str(256 * 1024), "PARLA_SEND_STALL_SECONDS": "2"}

    async def never_read(base_url, user, *, read_after_end: bool):
        port = int(base_url.rsplit(":", 1)[1])
        headers = {"Cookie": cookies[user.pk], "Origin": base_url}
        url = base_url.replace("http", "ws") + "/ws/tutor/"
        sock = deaf_socket(port)
        ws = await websockets.connect(url, sock=sock, additional_headers=headers, max_queue=1, max_size=None)
        try:
            assert json.loads(await ws.recv())["state"] == "ready"
            await ws.send(json.dumps({"type": "session.start"}))
            # From here on the client reads nothing while the tutor speaks.
            ended = await wait_until(
                lambda: (s := session_of(user)) is not None and s.ended_at is not None and s, 60, "session ended"
            )
            if not read_after_end:  # never reads again: the server drops the connection after the grace
                await until(lambda: not established(sock), wire.NOT_READING_CLOSE_GRACE_SECONDS + 10,
                            "the server to drop the connection")
            # Reading now: within the grace the close frame behind what was buffered arrives; after it,
            # the connection is already gone.
            async with asyncio.timeout(10):
                try:
                    async for _ in ws:
                        pass
                except websockets.ConnectionClosed:
                    pass
            return ended, ws.close_code
        finally:
            await ws.close()

    with ThreadedSimulator(pace=0.0, seed=3) as sim:
        with daphne_server(realtime_url=sim.url, redis_url=None, extra_env=limits, server=server) as base_url:
            asyncio.run(home_responds(base_url))  # warm up: the first request imports the views
            # and a first session loads the rater's word lists: what is measured is what one learner costs.
            # Its tutor speaks as usual: 29 MB at once to a reader on a loaded machine can fall behind the
            # 2 s stall limit, which ends that session before its rater is ready.
            asyncio.run(first_session(base_url, first, cookies[first.pk]))
            sim.wait_all_closed(10)
            sim.set_knobs(audio_ms_per_response=600_000)
            before = rss_kib(base_url.pid)
            ended, code = asyncio.run(never_read(base_url, users[0], read_after_end=True))
            after = rss_kib(base_url.pid)
            print(f"server RSS {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB after")
            left_open = sim.wait_all_closed(10)
            ended_again, code_again = asyncio.run(never_read(base_url, users[1], read_after_end=False))
            left_open_again = sim.wait_all_closed(10)
            head = asyncio.run(home_responds(base_url))
    assert after - before < 12 * 1024, f"server grew by {(after - before) / 1024:.1f} MiB"
    assert code == wire.CLOSE_NOT_READING
    assert ended.end_reason == TutorSession.EndReason.LEARNER_LEFT
    assert left_open == 0, "an upstream session outlived its learner"
    # A client that never reads again still loses its connection: dropped after the grace.
    assert ended_again.ended_at is not None and left_open_again == 0
    assert code_again != wire.CLOSE_NOT_READING  # it never read the close frame: the server aborted
    assert head.startswith(b"HTTP/1.1 200")
