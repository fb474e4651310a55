"""The simulator's transport: websockets server, handshake checks, latency, drops and expiry.

Protocol state lives in session.py; this module moves frames and simulates the network.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import ValidationError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tutor.realtime.tasks import cancel_and_wait

from . import errors
from .events import IdFactory, validate_server_event
from .knobs import KnobError, SimulatorKnobs
from .later import LaterVersion
from .session import RealtimeSession

logger = logging.getLogger("tutor.realtime.simulator")

REALTIME_PATH = "/v1/realtime"


@dataclass(frozen=True)
class _Close:
    """Queued after the events that must reach the client before the close frame."""

    code: int
    reason: str


class _Schedule:
    """Delivery times for one direction: latency +- jitter, never earlier than the previous one."""

    def __init__(self, knobs: SimulatorKnobs, rng: random.Random) -> None:
        self._latency = knobs.latency_ms / 1000
        self._jitter = knobs.jitter_ms / 1000
        self._rng = rng
        self._last = 0.0

    def due(self, now: float) -> float:
        if not self._latency and not self._jitter:
            return now
        delay = max(0.0, self._latency + self._rng.uniform(-self._jitter, self._jitter))
        self._last = max(now + delay, self._last)
        return self._last


async def _sleep_until(due: float) -> None:
    delay = due - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


class SimulatorConnection:
    """One client connection: its knobs, its session and the delayed in/out queues."""

    def __init__(
        self,
        ws: ServerConnection,
        knobs: SimulatorKnobs,
        *,
        number: int,
        model: str | None,
        on_invalid_event: Callable[[str], None],
        refusal: errors.RealtimeAPIError | None = None,
    ) -> None:
        self.ws = ws
        self.knobs = knobs
        self.model = model
        self.refusal = refusal  # refused after the upgrade (a wrong key): error, then close 3000
        self.events_sent = 0
        self.closing = False
        self._on_invalid_event = on_invalid_event
        net_rng = random.Random(f"{knobs.seed}:net:{number}")
        self._outgoing = _Schedule(knobs, net_rng)
        self._incoming = _Schedule(knobs, net_rng)
        self._outbox: asyncio.Queue[tuple[float, str | _Close]] = asyncio.Queue()
        self._inbox: asyncio.Queue[tuple[float, str | bytes]] = asyncio.Queue()
        self._ids = IdFactory(random.Random(f"{knobs.seed}:ids:{number}"))
        self._later = LaterVersion(self._ids.new) if knobs.later_version else None
        self.session = RealtimeSession(
            knobs=knobs,
            emit=self.emit,
            ids=self._ids,
            model=model or "",
            expires_at=int(time.time() + knobs.session_max_seconds),
        )

    @property
    def id(self) -> str:
        return self.session.id

    async def run(self) -> None:
        """Serve the connection until it closes; cancels and awaits everything it started."""
        tasks = [
            asyncio.create_task(self._send_loop(), name=f"simulator-send-{self.id}"),
            asyncio.create_task(self._process_loop(), name=f"simulator-process-{self.id}"),
            asyncio.create_task(self._expire_after(self.knobs.session_max_seconds), name=f"simulator-expiry-{self.id}"),
        ]
        if self.knobs.drop_after_seconds is not None:
            tasks.append(asyncio.create_task(self._drop_after(self.knobs.drop_after_seconds)))
        logger.info("connection opened", extra={"session_id": self.id, "model": self.model})
        if self.refusal is not None:
            # A wrong key upgrades, gets the error and is closed with 3000 "<type>.<code>", no
            # session.created (see errors.invalid_api_key for the sources).
            self.session.send_error(self.refusal, None)
            self.close(3000, f"{self.refusal.type}.{self.refusal.code}")
        elif self.model:
            self.session.start()
        else:
            # Source: capture probe 11b: error missing_model, then close 4000 "<type>.<code>".
            self.session.send_error(errors.missing_model(), None)
            self.close(4000, "invalid_request_error.missing_model")
        loop = asyncio.get_running_loop()
        try:
            async for message in self.ws:
                self._inbox.put_nowait((self._incoming.due(loop.time()), message))
        except ConnectionClosed:
            pass
        finally:
            await cancel_and_wait(*tasks)
            await self.session.aclose()
            logger.info(
                "connection closed",
                extra={"session_id": self.id, "code": self.ws.close_code, "events_sent": self.events_sent},
            )

    def emit(self, event: dict[str, Any]) -> None:
        """Queue one server event (a fresh `event_id` is added) for delivery after the latency."""
        event = {"type": event["type"], "event_id": self._ids.new("event"), **event}
        if self.knobs.validate_output:
            try:
                validate_server_event(event)
            except ValidationError as exc:
                logger.error("invalid server event", extra={"session_id": self.id, "event_type": event["type"]})
                self._on_invalid_event(f"{event['type']}: {exc}")
        # A later API version (knob): what this version sends, with what a later one may add (later.py).
        events = self._later.transform(event) if self._later is not None else (event,)
        for sent in events:
            sent.setdefault("event_id", self._ids.new("event"))
            due = self._outgoing.due(asyncio.get_running_loop().time())
            self._outbox.put_nowait((due, json.dumps(sent, ensure_ascii=False)))

    def close(self, code: int, reason: str) -> None:
        """Close after the events already queued; client frames are ignored from now on."""
        self.closing = True
        due = self._outgoing.due(asyncio.get_running_loop().time())
        self._outbox.put_nowait((due, _Close(code, reason)))

    def drop(self, why: str) -> None:
        """Simulate a network failure: abort the TCP connection without a close frame."""
        logger.info("connection dropped", extra={"session_id": self.id, "why": why})
        self.closing = True
        self.ws.transport.abort()

    async def _send_loop(self) -> None:
        limit = self.knobs.drop_after_events
        try:
            while True:
                due, payload = await self._outbox.get()
                await _sleep_until(due)
                if isinstance(payload, _Close):
                    await self.ws.close(payload.code, payload.reason)
                    return
                await self.ws.send(payload)
                self.events_sent += 1
                if limit is not None and self.events_sent >= limit:
                    self.drop("drop_after_events")
                    return
        except ConnectionClosed:
            return

    async def _process_loop(self) -> None:
        while True:
            due, message = await self._inbox.get()
            await _sleep_until(due)
            if self.closing:
                continue
            try:
                if isinstance(message, str):
                    self.session.handle_text(message)
                else:
                    self.session.handle_binary()
            except Exception:  # a simulator bug must not kill the session silently
                logger.exception("client event failed", extra={"session_id": self.id})
                failure = errors.RealtimeAPIError(
                    "The simulator had an error processing the event.", None, type="server_error"
                )
                self.session.send_error(failure, None)

    async def _expire_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        expired = errors.session_expired(seconds)
        logger.info("session expired", extra={"session_id": self.id, "max_seconds": seconds})
        self.session.send_error(expired, None)
        self.close(1001, expired.message)

    async def _drop_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.drop("drop_after_seconds")


def _json_http_error(
    status: HTTPStatus, message: str, code: str | None, type: str = errors.INVALID_REQUEST
) -> Response:
    """An HTTP error shaped like the OpenAI API's error body."""
    error = {"message": message, "type": type, "param": None, "code": code}
    body = json.dumps({"error": error}).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)


def _bearer_token(header: str | None) -> str:
    scheme, _, token = (header or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _mask(token: str) -> str:
    return f"{token[:3]}***{token[-4:]}" if len(token) > 8 else "***"


class RealtimeSimulator:
    """The bundled OpenAI Realtime (GA) simulator: `async with RealtimeSimulator(...) as sim:`."""

    def __init__(self, knobs: SimulatorKnobs | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.knobs = knobs or SimulatorKnobs()
        self.host = host
        self._requested_port = port
        self.connections: list[SimulatorConnection] = []
        self.validation_errors: list[str] = []  # outgoing events that failed the openai models
        self._server: Server | None = None
        self._opened = 0

    @property
    def port(self) -> int:
        if self._server is None:
            return self._requested_port
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"ws://{host}:{self.port}{REALTIME_PATH}"

    async def start(self) -> RealtimeSimulator:
        self._server = await serve(
            self._handle,
            self.host,
            self._requested_port,
            process_request=self._check_request,
            max_size=self.knobs.max_message_bytes,
            compression=None,  # base64 PCM gains little from deflate; as Parla's client (bench/hotpath.py)
        )
        logger.info("simulator listening", extra={"url": self.url})
        return self

    async def stop(self) -> None:
        """Close every connection (1001) and wait until all their tasks have ended."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close(close_connections=True)
        await server.wait_closed()
        logger.info("simulator stopped")

    async def serve_forever(self) -> None:
        """Run until cancelled (Ctrl-C in the management command)."""
        if self._server is None:
            await self.start()
        try:
            await asyncio.Future()
        finally:
            await self.stop()

    async def __aenter__(self) -> RealtimeSimulator:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Handshake: path, bearer token and knob overrides, refused before the upgrade."""
        parts = urlsplit(request.path)
        if parts.path.rstrip("/") != REALTIME_PATH:
            return _json_http_error(HTTPStatus.NOT_FOUND, f"Invalid URL (GET {parts.path})", None)
        if self.knobs.require_auth and not _bearer_token(request.headers.get("Authorization")):
            return _json_http_error(HTTPStatus.UNAUTHORIZED, "Missing bearer or basic authentication in header", None)
        # A wrong key is not refused here: like the real API, it upgrades and is refused in band
        # (_wrong_key, SimulatorConnection.run).
        try:
            knobs = self._connection_knobs(request.path)
        except KnobError as exc:
            return _json_http_error(HTTPStatus.BAD_REQUEST, str(exc), "invalid_value")
        if knobs.refuse_upgrade is not None:
            refusal = errors.upgrade_refusal(knobs.refuse_upgrade)
            logger.info("upgrade refused", extra={"status": knobs.refuse_upgrade, "code": refusal.code})
            return _json_http_error(HTTPStatus(knobs.refuse_upgrade), refusal.message, refusal.code, refusal.type)
        connection.protocol.max_message_size = knobs.max_message_bytes
        return None

    def _wrong_key(self, request: Request) -> errors.RealtimeAPIError | None:
        """The in-band refusal of a bearer token that is not the configured key, if it is not."""
        if not self.knobs.require_auth or self.knobs.api_key is None:
            return None
        token = _bearer_token(request.headers.get("Authorization"))
        if hmac.compare_digest(token, self.knobs.api_key):
            return None
        return errors.invalid_api_key(_mask(token))

    def _connection_knobs(self, path: str) -> SimulatorKnobs:
        return self.knobs.with_overrides(dict(parse_qsl(urlsplit(path).query, keep_blank_values=True)))

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self._opened += 1
        connection = SimulatorConnection(
            ws,
            self._connection_knobs(ws.request.path),
            number=self._opened,
            model=dict(parse_qsl(urlsplit(ws.request.path).query)).get("model"),
            on_invalid_event=self.validation_errors.append,
            refusal=self._wrong_key(ws.request),
        )
        self.connections.append(connection)
        try:
            await connection.run()
        finally:
            self.connections.remove(connection)
