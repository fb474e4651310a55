"""Backpressure on a learner's socket: a send queue with a limit, fed by what Daphne's transport knows.

The ASGI interface gives an application no view of its connection's write buffer: Daphne's `send`
hands each message to Twisted at once (`Server.handle_reply` -> autobahn's `sendMessage` ->
`transport.write`), and Twisted buffers whatever the peer does not read, without bound. Twisted does
say when that buffer is full: a streaming `IPushProducer` registered on the transport is told
`pauseProducing()` when its buffer passes `bufferSize` (64 KiB) and `resumeProducing()` once it has
drained (twisted.internet.abstract.FileDescriptor: `_maybePauseProducer`, `doWrite`).

After the websocket upgrade the transport's registered producer is still the `HTTPChannel` that
parsed the upgrade request (twisted.web.http.HTTPChannel.connectionMade registers it; Daphne's
WebRequest hands the transport to the WebSocketProtocol and never unregisters it). `HTTPChannel`
is itself a consumer: `HTTPChannel.registerProducer(producer, streaming=True)` forwards the
transport's pause and resume to that producer (its `pauseProducing`/`resumeProducing` docstrings),
which is how twisted.web's own responses are throttled. `DaphneSocket.watch` registers a
`TransportWatch` there.

`SendQueue` is what the consumer writes through: while the transport is writable a message goes
straight to it; while it is paused messages wait in order. A browser that has not drained its buffer
for `max_stall` seconds, or with more than `max_bytes` waiting, is not reading: `on_stuck` is called
once (the consumer then ends the session and closes with 4008). Over TLS terminated by Daphne itself
(a TLS transport has no `producer`) there is no watch and messages go straight out: the README's
deployment terminates TLS at the proxy.

Uvicorn (`python -m tutor.serve`) is the other way round: its `send` waits, without a bound,
until the transport is writable again (uvicorn/protocols/websockets/websockets_sansio_impl.py,
`send`: `await self.writable.wait()`, an event its `pause_writing`/`resume_writing` clear and set;
asyncio's transports call those past the write buffer's high-water mark, 64 KiB). A consumer that
sent straight into it would stop with the first browser that stops reading: no more learner audio
read, no 4008. `UvicornSocket.watch` drives the same TransportWatch from that protocol's
`pause_writing`, `resume_writing` and `connection_lost`, so the SendQueue holds messages back instead
of waiting inside `send`; a close to a browser that does not read is bounded by aborting the
connection (`abort_unanswered_close`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from autobahn.exception import Disconnected
from zope.interface import implementer

from tutor.realtime.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

SCOPE_KEY = "parla.socket"  # the connection's DaphneSocket or UvicornSocket in a websocket scope (TransportMiddleware)


class TransportWatch:
    """A streaming producer (twisted.internet.interfaces.IPushProducer) that only listens: the
    transport pauses it when its write buffer is full and resumes it once the buffer drained."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.paused = False
        self.paused_at = 0.0
        self.stopped = False  # the connection is gone
        self.writable = asyncio.Event()
        self.writable.set()

    def pauseProducing(self) -> None:  # noqa: N802 (Twisted's interface)
        if not self.paused:
            self.paused, self.paused_at = True, self.clock()
            self.writable.clear()

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False
        self.writable.set()

    def stopProducing(self) -> None:  # noqa: N802
        self.stopped = True
        self.paused = False
        self.writable.set()


def _declare_push_producer() -> None:
    from twisted.internet.interfaces import IPushProducer

    implementer(IPushProducer)(TransportWatch)


try:  # Twisted comes with Daphne; the realtime layer's tests run without importing it
    _declare_push_producer()
except ImportError:  # pragma: no cover
    pass


class DaphneSocket:
    """One websocket connection served by Daphne: its autobahn protocol and Twisted transport."""

    def __init__(self, protocol: Any):
        self.protocol = protocol
        self._channel: Any = None

    def watch(self) -> TransportWatch | None:
        """Register a TransportWatch on the connection; None when the transport cannot say (see above)."""
        channel = getattr(self.protocol.transport, "producer", None)  # FileDescriptor.producer: the HTTPChannel
        if channel is None or not hasattr(channel, "registerProducer"):
            logger.info("no transport backpressure on this connection", extra={"transport": type(self.protocol.transport).__name__})
            return None
        watch = TransportWatch(asyncio.get_running_loop().time)
        try:
            channel.registerProducer(watch, True)
        except RuntimeError:  # another producer is registered there: leave it alone
            logger.info("no transport backpressure on this connection", extra={"producer": type(channel).__name__})
            return None
        self._channel = channel
        return watch

    def unwatch(self) -> None:
        if self._channel is not None:
            self._channel.unregisterProducer()
            self._channel = None

    def close_on_failure(self) -> None:
        """A frame autobahn refuses (over Daphne's 1 MiB limit: code 1009; invalid UTF-8: 1007; a
        protocol error: 1002) closes the connection with a close frame the browser sees, instead of
        autobahn's default `failByDrop`, which drops the TCP connection (the browser sees only 1006).
        The close handshake is bounded by autobahn's closeHandshakeTimeout, then the TCP is dropped."""
        self.protocol.failByDrop = False

    def abort_unanswered_close(self, grace: float) -> None:
        """A close from now on drops the connection if the browser has not answered it within
        `grace` seconds (autobahn's closeHandshakeTimeout, default 1 s, then `abortConnection`):
        the close frame of a browser that does not read may never be delivered."""
        self.protocol.closeHandshakeTimeout = grace


class UvicornSocket:
    """One websocket connection served by Uvicorn's websockets-sansio protocol (the one `tutor/serve.py`
    configures): the protocol object whose bound `send` the application was given."""

    def __init__(self, protocol: Any):
        self.protocol = protocol
        self._hooked: TransportWatch | None = None
        self._abort: asyncio.TimerHandle | None = None

    def watch(self) -> TransportWatch:
        """Drive a TransportWatch from the protocol's flow-control callbacks. The transport calls them
        on the protocol object (asyncio's `_maybe_pause_protocol`, uvloop's alike): instance
        attributes that call the protocol's own methods first, then the watch."""
        protocol = self.protocol
        watch = TransportWatch(asyncio.get_running_loop().time)
        pause, resume, lost = protocol.pause_writing, protocol.resume_writing, protocol.connection_lost

        def pause_writing() -> None:
            pause()
            watch.pauseProducing()

        def resume_writing() -> None:
            resume()
            watch.resumeProducing()

        def connection_lost(exc: Exception | None) -> None:
            try:
                lost(exc)
            finally:
                watch.stopProducing()
                self._cancel_abort()

        protocol.pause_writing, protocol.resume_writing, protocol.connection_lost = pause_writing, resume_writing, connection_lost
        if not protocol.writable.is_set():  # already past the high-water mark
            watch.pauseProducing()
        if protocol.disconnected:
            watch.stopProducing()
        self._hooked = watch
        return watch

    def unwatch(self) -> None:
        """The application is done with the connection. An armed abort stays: the application ends
        as soon as its close frame is written, and the browser may still not read it."""
        if self._hooked is not None:
            for name in ("pause_writing", "resume_writing", "connection_lost"):
                self.protocol.__dict__.pop(name, None)  # the class's methods again
            self._hooked = None

    def close_on_failure(self) -> None:
        """Nothing to do: an oversized or invalid frame already gets its close frame (1009, 1007,
        1002) from the protocol (`handle_parser_exception`)."""

    def abort_unanswered_close(self, grace: float) -> None:
        """Drop the connection if it is still open `grace` seconds from now. Uvicorn's `send` of the
        close frame waits for a writable transport, and its close timer (10 s) then calls
        `transport.close()`, which waits for the write buffer to drain: a browser that reads nothing
        would hold both forever. The abort ends the wait (`send` then raises ClientDisconnected, an
        OSError: CLOSED_ERRORS)."""
        self._cancel_abort()
        self._abort = asyncio.get_running_loop().call_later(grace, self._abort_if_open)

    def _abort_if_open(self) -> None:
        self._abort = None
        transport = self.protocol.transport
        if self.protocol.disconnected or transport is None:
            return
        logger.info("close unanswered: connection dropped")
        # An abortive close (SO_LINGER on, 0 s: the kernel resets the connection and discards what it
        # still holds; socket(7)). A plain close keeps the connection open behind the unread data of
        # the kernel's send buffer for as long as the browser's window stays shut.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    def _cancel_abort(self) -> None:
        if self._abort is not None:
            self._abort.cancel()
            self._abort = None


def uvicorn_socket(send: Callable) -> UvicornSocket | None:
    """The connection behind Uvicorn's ASGI `send`: the websockets-sansio protocol's bound `send`."""
    protocol = getattr(send, "__self__", None)
    if protocol is None or type(protocol).__name__ != "WebSocketsSansIOProtocol":
        return None
    if not all(hasattr(protocol, name) for name in ("writable", "disconnected", "transport", "pause_writing")):
        return None  # another uvicorn version's protocol: no watch rather than a wrong one
    return UvicornSocket(protocol)


def daphne_socket(send: Callable) -> DaphneSocket | None:
    """The connection behind Daphne's ASGI `send` callable: Daphne passes every application
    `functools.partial(Server.handle_reply, protocol)` (daphne/server.py, create_application)."""
    if not isinstance(send, functools.partial) or not send.args:
        return None
    protocol = send.args[0]
    if not hasattr(protocol, "transport") or not hasattr(protocol, "sendClose"):  # autobahn's websocket protocol
        return None
    return DaphneSocket(protocol)


class TransportMiddleware:
    """ASGI middleware, outermost: puts the connection's DaphneSocket or UvicornSocket into a
    websocket scope (only the outermost application sees the server's own `send`; channels' session
    middleware wraps it)."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            socket = daphne_socket(send) or uvicorn_socket(send)
            if socket is not None:
                socket.close_on_failure()
                scope = {**scope, SCOPE_KEY: socket}
        return await self.inner(scope, receive, send)


# A send on a connection the browser already closed: the ASGI spec asks servers to raise an OSError
# subclass ("If send() is called on a closed connection the server should raise a server-specific
# subclass of IOError", asgiref docs, specs/www.html, websocket Send); Daphne 4 lets autobahn's
# `Disconnected` ("Attempt to send on a closed protocol") through. Either way the learner has left and
# the disconnect is on its way to the consumer: what was being sent is dropped, not a server error.
CLOSED_ERRORS = (OSError, Disconnected)


def _size(message: dict) -> int:
    payload = message.get("bytes") or message.get("text") or ""
    return len(payload)


class SendQueue:
    """The messages of one connection to the browser, in order, held back while the transport is full.

    `put` sends at once while the transport is writable and nothing waits; otherwise the message waits
    and an owned pump task sends it once the transport drained. Stuck (paused longer than `max_stall`
    seconds, or more than `max_bytes` waiting): the queue is dropped, later messages are dropped too,
    and `on_stuck(reason)` runs once, in a task of its own (`put` may be called from a task that
    `on_stuck` will cancel).
    """

    def __init__(
        self,
        send: Callable[[dict], Awaitable[None]],
        watch: TransportWatch | None,
        *,
        max_bytes: int,
        max_stall: float,
        on_stuck: Callable[[str], Awaitable[None]],
    ):
        self._send = send
        self.watch = watch
        self.max_bytes = max_bytes
        self.max_stall = max_stall
        self._on_stuck = on_stuck
        self._queue: deque[dict] = deque()
        self.queued_bytes = 0
        self.peak_bytes = 0
        self.stuck: str | None = None
        self._pump: asyncio.Task | None = None
        self._closer: asyncio.Task | None = None
        self.gone = False  # a send found the connection closed by the browser: nothing more goes out

    async def put(self, message: dict) -> None:
        if self.stuck or self.gone:
            return
        if not self._queue and (self.watch is None or not self.watch.paused):
            await self._deliver(message)
            return
        self._queue.append(message)
        self.queued_bytes += _size(message)
        self.peak_bytes = max(self.peak_bytes, self.queued_bytes)
        if self.queued_bytes > self.max_bytes:
            self._give_up(f"{self.queued_bytes} bytes waiting for the browser")
        elif self._pump is None:
            self._pump = asyncio.create_task(self._drain(), name="learner-send-queue")

    async def flush(self) -> None:
        """Send everything that waits now, in order (before a close frame: the transport takes it)."""
        await self._stop_pump()
        while self._queue:
            await self._deliver(self._pop())

    async def aclose(self) -> None:
        """Stop the pump; let a running `on_stuck` finish (it ends the session: it must not be cut short)."""
        await self._stop_pump()
        self._queue.clear()
        if self._closer is not None and self._closer is not asyncio.current_task():
            await asyncio.shield(self._closer)

    # --- internals ---------------------------------------------------------------------------------

    async def _deliver(self, message: dict) -> None:
        if self.gone:
            return
        try:
            await self._send(message)
        except CLOSED_ERRORS as exc:
            self.gone = True
            self._queue.clear()
            self.queued_bytes = 0
            logger.info("send dropped: the browser closed the connection", extra={"error": str(exc)})

    def _pop(self) -> dict:
        message = self._queue.popleft()
        self.queued_bytes -= _size(message)
        return message

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue and not self.stuck:
                watch = self.watch
                if watch.stopped:  # the connection is gone: nobody will read these
                    self._queue.clear()
                    self.queued_bytes = 0
                    return
                if watch.paused:
                    remaining = self.max_stall - (loop.time() - watch.paused_at)
                    try:
                        async with asyncio.timeout(max(remaining, 0.0)):
                            await watch.writable.wait()
                    except TimeoutError:
                        self._give_up(f"the browser read nothing for {self.max_stall:g} s")
                        return
                    continue
                await self._deliver(self._pop())
        finally:
            self._pump = None

    async def _stop_pump(self) -> None:
        pump = self._pump
        if pump is not None and pump is not asyncio.current_task():
            await cancel_and_wait(pump)

    def _give_up(self, reason: str) -> None:
        if self.stuck:
            return
        self.stuck = reason
        self._queue.clear()
        self.queued_bytes = 0
        self._closer = asyncio.create_task(self._on_stuck(reason), name="learner-not-reading")
