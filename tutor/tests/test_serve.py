"""Serving with Uvicorn (tutor/serve.py, tutor/backpressure.UvicornSocket), without a process: SIGTERM
goes to the drain first, and the send queue's watch follows Uvicorn's flow control. The live tests
serve with it too: test_socket_robustness (4008, 4429), test_faults_numbers (1009), test_drain."""

from __future__ import annotations

import asyncio
import signal
import socket
import struct

import pytest

from tutor import serve
from tutor.backpressure import UvicornSocket, uvicorn_socket
from tutor.drain import Drain


class Recorder:
    def __init__(self):
        self.calls: list[str] = []


@pytest.fixture(autouse=True)
def _process_drain_untouched():
    """serve.Server hands this process's drain its stop: put back what was there."""
    from tutor import drain

    before = drain.current._stop_server
    yield
    drain.current._stop_server = before


def server_with(drain: Drain) -> serve.Server:
    server = serve.Server(serve.config(port=0))
    server.drain = drain
    drain.serve_with(server.exit_after_drain)
    return server


async def test_the_first_sigterm_starts_the_drain_and_the_server_exits_when_it_is_done():
    drain = Drain()
    drain.start()  # inside the loop, as the lifespan starts it; no reactor here
    server = server_with(drain)
    ran = asyncio.Event()

    async def quick_drain():
        ran.set()

    drain._drain = quick_drain  # the drain's steps are test_drain's; here only who stops whom
    server.handle_exit(signal.SIGTERM, None)
    assert drain.draining and not server.should_exit  # Uvicorn's own shutdown would close every socket now
    await asyncio.sleep(0)  # the signal handler scheduled the drain on the loop
    await asyncio.wait_for(drain.task, 5)
    assert ran.is_set() and server.should_exit and not server.force_exit


async def test_a_second_sigterm_or_a_sigint_is_uvicorns_own_shutdown():
    drain = Drain()
    drain.start()
    server = server_with(drain)
    never = asyncio.Event()

    async def long_drain():
        await never.wait()

    drain._drain = long_drain
    server.handle_exit(signal.SIGTERM, None)
    await asyncio.sleep(0)  # the drain task starts
    assert not server.should_exit
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit  # the operator means it
    await drain.stop()

    other = server_with(Drain())
    other.drain.start()
    other.handle_exit(signal.SIGINT, None)
    assert other.should_exit and not other.drain.draining


def test_without_a_running_loop_the_drain_does_not_take_sigterm():
    server = server_with(Drain())  # the lifespan never started it: nothing to drain with
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit and not server.drain.draining


def test_the_server_is_configured_as_measured():
    config = serve.config(host="0.0.0.0", port=8000)
    assert (config.loop, config.http, config.ws, config.lifespan) == ("uvloop", "httptools", "websockets-sansio", "on")
    assert config.ws_max_size == 1024 * 1024  # Daphne's limit: the same 1009 close under either server
    assert config.app == "config.asgi:application"


class FakeTransport:
    def __init__(self):
        self.aborted = False
        self.linger = None
        self.sock = socket.socket()

    def get_extra_info(self, name):
        return self.sock if name == "socket" else None

    def abort(self):
        self.linger = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)
        self.aborted = True


class WebSocketsSansIOProtocol:
    """The parts of uvicorn's protocol UvicornSocket uses, with its flow-control methods."""

    def __init__(self):
        self.writable = asyncio.Event()
        self.writable.set()
        self.disconnected = False
        self.transport = FakeTransport()
        self.queue = asyncio.Queue()

    def pause_writing(self):
        self.writable.clear()

    def resume_writing(self):
        self.writable.set()

    def connection_lost(self, exc):
        self.disconnected = True
        self.writable.set()

    async def send(self, message):
        await self.writable.wait()


async def test_the_watch_follows_the_protocols_flow_control_and_is_taken_off_again():
    protocol = WebSocketsSansIOProtocol()
    sock = uvicorn_socket(protocol.send)
    assert isinstance(sock, UvicornSocket)
    watch = sock.watch()
    assert not watch.paused
    protocol.pause_writing()  # what the transport calls, past its high-water mark
    assert watch.paused and not protocol.writable.is_set()  # uvicorn's own handling still runs
    protocol.resume_writing()
    assert not watch.paused and protocol.writable.is_set()
    protocol.pause_writing()
    protocol.connection_lost(None)
    assert watch.stopped and protocol.disconnected
    sock.unwatch()
    assert "pause_writing" not in vars(protocol) and "connection_lost" not in vars(protocol)
    protocol.transport.sock.close()


async def test_a_close_the_browser_does_not_answer_resets_the_connection_after_the_grace():
    protocol = WebSocketsSansIOProtocol()
    sock = uvicorn_socket(protocol.send)
    sock.watch()
    sock.abort_unanswered_close(0.05)
    await asyncio.sleep(0.2)
    assert protocol.transport.aborted
    assert struct.unpack("ii", protocol.transport.linger) == (1, 0)  # a reset, not a close behind unread data

    ended = WebSocketsSansIOProtocol()  # the application ended once its close frame was written
    gone = uvicorn_socket(ended.send)
    gone.watch()
    gone.abort_unanswered_close(0.05)
    gone.unwatch()
    await asyncio.sleep(0.2)
    assert ended.transport.aborted  # the browser still had not answered: dropped all the same

    answered = WebSocketsSansIOProtocol()
    other = uvicorn_socket(answered.send)
    other.watch()
    other.abort_unanswered_close(0.05)
    answered.connection_lost(None)  # the browser answered the close: the connection ended
    await asyncio.sleep(0.2)
    assert not answered.transport.aborted
    for one in (protocol, ended, answered):
        one.transport.sock.close()


def test_only_uvicorns_websocket_protocol_names_a_socket():
    class Other:
        async def send(self, message):
            pass

    async def send(message):
        pass

    assert uvicorn_socket(send) is None and uvicorn_socket(Other().send) is None


@pytest.mark.parametrize("already", ["paused", "gone"])
async def test_a_watch_taken_late_starts_from_the_protocols_state(already):
    protocol = WebSocketsSansIOProtocol()
    if already == "paused":
        protocol.writable.clear()
    else:
        protocol.disconnected = True
    watch = uvicorn_socket(protocol.send).watch()
    assert watch.paused if already == "paused" else watch.stopped
    protocol.transport.sock.close()


async def test_a_second_close_sends_nothing(monkeypatch):
    """The drain may close a connection whose own close (4008, 4409...) is already on its way; under
    Uvicorn a second `websocket.close` raises ("Unexpected ASGI message 'websocket.close', after
    sending 'websocket.close'"), so the consumer sends its close frame once."""
    from channels.generic.websocket import AsyncWebsocketConsumer

    from tutor.consumers import TutorConsumer

    sent = []

    async def close(self, code=None, reason=None):
        sent.append(code)

    monkeypatch.setattr(AsyncWebsocketConsumer, "close", close)
    consumer = TutorConsumer()
    consumer.closing, consumer.socket, consumer.outbox = False, None, None
    await consumer.close(code=4008)
    await consumer.close(code=4012)
    assert sent == [4008]
