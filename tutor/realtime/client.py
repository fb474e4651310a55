"""RealtimeClient: one websocket session with the OpenAI Realtime API (or the bundled simulator).

One send path and one parse path (STYLE.md, after pipecat): every client event gets an `event_id` and
goes through `send`; every server event is parsed with the `openai.types.realtime` models, fed to the
session's `ResponseTracker`, offered to whoever waits for it, then handed to the event handler.

Waiting is for events, never for time: `request()` sends an event and returns the server event that
confirms it, raises `RealtimeRequestError` when an `error` names our `event_id`, and `TimeoutError`
when neither arrives in time. An `error` is not fatal: it is matched to the client event that caused it.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit, parse_qsl

import websockets
from websockets.exceptions import InvalidHandshake, InvalidStatus
from pydantic import BaseModel

from tutor import metrics
from tutor.realtime import correlation
from tutor.realtime.failures import UpstreamFailure, fatal_error, refused_at_upgrade, refused_in_band
from tutor.realtime.logs import bind
from tutor.realtime.schemas import LenientRead, Loose, parse_server_event, read_server_event, validate_client_event
from tutor.realtime.tasks import cancel_and_wait, wait_responsive
from tutor.realtime.tracker import ResponseTracker

logger = logging.getLogger(__name__)

CANCEL_NOT_ACTIVE = "response_cancel_not_active"
DEFAULT_KEEPALIVE = 5.0  # seconds between pings, and for a pong (see RealtimeClient._keepalive)

EventHandler = Callable[[Any], Awaitable[None]]
Predicate = Callable[[Any], bool]


class RealtimeError(Exception):
    """Base class of the realtime client's errors."""


class RealtimeRequestError(RealtimeError):
    """The server answered one of our client events with an `error` event."""

    def __init__(self, error: Any):
        self.error = error
        self.code = error.code
        self.event_id = error.event_id
        super().__init__(f"{error.code or error.type}: {error.message}")


class RealtimeRefused(RealtimeError):
    """The upstream refused the session: an HTTP status at the upgrade, or an `error` and a close before
    `session.created` (a wrong key: `invalid_api_key`, close 3000). `failure` says what it means for the
    learner; `message` is the upstream's own text, for the log only."""

    def __init__(self, failure: UpstreamFailure, *, status: int | None = None, close_code: int | None = None,
                 code: str | None = None, message: str = ""):
        self.failure = failure
        self.status = status
        self.close_code = close_code
        self.code = code
        self.message = message
        super().__init__(f"refused (status={status}, close={close_code}, code={code}): {message}")


class RealtimeClosed(RealtimeError):
    """The upstream socket closed while we were waiting for an event."""

    def __init__(self, code: int | None, reason: str):
        self.code = code
        self.reason = reason
        super().__init__(f"upstream closed (code={code}, reason={reason!r})")


def with_model(url: str, model: str | None) -> str:
    """`url` with `?model=` set, keeping any other query parameters."""
    if not model:
        return url
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("model", model)
    return urlunsplit(parts._replace(query=urlencode(query)))


def _error_body(body: bytes | None) -> tuple[str | None, str]:
    """(code, message) of the API's JSON error body of an HTTP refusal; (None, raw text) otherwise."""
    text = (body or b"").decode("utf-8", "replace")
    try:
        error = json.loads(text)["error"]
        return error.get("code"), str(error.get("message") or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, text[:200]


# What this process has logged of events the installed `openai` models do not know in full: once per event
# type and place of the first difference; and the event types whose unknown fields were looked for.
_lenient_logged: set[tuple[str, str]] = set()
_seen_types: set[str] = set()


def _note_unknown_fields(event: Any, log: Any) -> None:
    """The first event of each type in this process: fields the models do not know (extras, allowed by
    `openai`'s models and ignored by Parla) are logged once, by path. Only once per type: never on the
    hot path."""
    _seen_types.add(event.type)
    paths = _extra_paths(event, "")
    if paths:
        log.info("upstream event has fields Parla does not know", extra={"type": event.type, "fields": paths[:10]})


def _extra_paths(value: Any, prefix: str) -> list[str]:
    if isinstance(value, BaseModel):
        found = [f"{prefix}{name}" for name in (value.model_extra or {})]
        for name in type(value).model_fields:
            found += _extra_paths(getattr(value, name), f"{prefix}{name}.")
        return found
    if isinstance(value, list):
        return [path for entry in value[:3] for path in _extra_paths(entry, f"{prefix}0.")]
    return []


@dataclass
class _Waiter:
    predicate: Predicate
    future: asyncio.Future
    event_id: str | None = None  # an error carrying this event_id fails the waiter
    event_type: str | None = None  # the type of that client event (an error without event_id: correlation)


def audio_append_json(event_id: str, pcm: bytes) -> str:
    """The `input_audio_buffer.append` of `pcm`, as JSON text written directly (no character of a
    base64 string or of our event ids needs escaping)."""
    audio = base64.b64encode(pcm).decode("ascii")
    return f'{{"type":"input_audio_buffer.append","event_id":"{event_id}","audio":"{audio}"}}'


class RealtimeClient:
    """A Realtime API session over websockets; owns its reader task."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        name: str = "tutor",
        handler: EventHandler | None = None,
        validate_sent: bool = False,
        strict_read: bool | None = None,
        open_timeout: float = 10.0,
        keepalive: float = DEFAULT_KEEPALIVE,
    ):
        self.url = with_model(url, model)
        self.name = name
        self.log = bind(logger, upstream=name)
        self.api_key = api_key or "parla-simulator"
        self.tracker = ResponseTracker()
        self.handler = handler
        # Validating what we send against the openai client-event models catches schema mistakes
        # before the API does; tutor.upstream turns it on in DEBUG and in the tests (PARLA_VALIDATE_EVENTS).
        self.validate_sent = validate_sent
        self._append_validated = False  # an audio append's shape never varies: validate only the first
        # Server events the models do not know in full are read, never dropped (schemas.read_server_event);
        # strict: each is logged as an error and kept in `lenient_reads` (tests, DEBUG).
        self.strict_read = validate_sent if strict_read is None else strict_read
        self.recorder: Any = None  # an UpstreamRecorder (PARLA_UPSTREAM_LOG): the session's traffic, audio as counts
        self.lenient_reads: list[LenientRead] = []
        self.open_timeout = open_timeout
        self.keepalive = keepalive
        self.went_silent = False  # the upstream stopped answering pings: the connection was failed
        self.close_code: int | None = None
        self.close_reason = ""
        self.session_created = False
        self.last_error: Any = None  # the last `error` event's error (a refusal comes as one, then the close)
        self._ws: Any = None
        self._reader: asyncio.Task | None = None
        self._pinger: asyncio.Task | None = None
        self._waiters: list[_Waiter] = []
        # event_id -> error codes that mean success for that request even after it was answered
        # (e.g. a cancel that raced the response's own completion).
        self._tolerated: dict[str, frozenset[str]] = {}
        self.tolerated_errors = 0  # errors that answered a request the way it allowed (metrics)
        self._ids = itertools.count(1)
        self._prefix = f"evt_parla_{secrets.token_hex(4)}_"
        self.closed = asyncio.Event()

    # --- lifecycle -------------------------------------------------------------------------------

    async def connect(self) -> Any:
        """Open the socket and return the `session.created` event."""
        try:
            self._ws = await websockets.connect(
                self.url,
                additional_headers={"Authorization": f"Bearer {self.api_key}"},
                open_timeout=self.open_timeout,
                max_size=None,  # audio deltas can be large; the API is trusted to frame them
                # No permessage-deflate: the traffic is base64 PCM, which deflate shrinks by about a quarter
                # at a CPU cost per frame that dominated the relay's profile (bench/hotpath.py).
                compression=None,
                ping_interval=None,  # Parla's own keepalive (_keepalive), timed as the loop keeps up
                close_timeout=self.keepalive,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            code, message = _error_body(exc.response.body)
            raise RealtimeRefused(refused_at_upgrade(status, code), status=status, code=code, message=message) from exc
        except InvalidHandshake as exc:  # not a websocket server, a broken upgrade
            raise RealtimeError(f"websocket handshake failed: {exc}") from exc
        created = asyncio.get_running_loop().create_future()
        self._waiters.append(_Waiter(lambda e: e.type == "session.created", created))
        self._reader = asyncio.create_task(self._read(), name=f"realtime-reader-{self.name}")
        self._pinger = asyncio.create_task(self._keepalive(), name=f"realtime-keepalive-{self.name}")
        try:
            event = await self._wait(created, self.open_timeout)
        except RealtimeClosed as exc:
            refusal = self.last_error
            if refusal is None:
                raise
            raise RealtimeRefused(
                refused_in_band(refusal.code), close_code=exc.code, code=refusal.code, message=refusal.message or ""
            ) from exc
        self.log.info("upstream session created", extra={"session_id": event.session.id if event.session else None})
        return event

    async def open(self, session: dict, timeout: float) -> Any:
        """Connect and configure: `session.update` with `session`, confirmed by `session.updated`.

        Returns the `session.created` event. Nothing that depends on the configuration can be sent
        before this returns; on any failure the socket is closed again.
        """
        try:
            created = await self.connect()
            await self.request({"type": "session.update", "session": session}, "session.updated", timeout)
        except BaseException:
            await self.close()
            raise
        return created

    async def close(self) -> None:
        """Close the socket and cancel and await the reader task (idempotent)."""
        await cancel_and_wait(self._pinger)
        self._pinger = None
        if self._ws is not None:
            await self._ws.close()
        await cancel_and_wait(self._reader)
        self._reader = None
        self._fail_waiters(RealtimeClosed(self.close_code, self.close_reason))
        if self.recorder is not None:
            self.recorder.closed(self.close_code, self.close_reason)  # also when it never connected
        self.closed.set()

    async def __aenter__(self) -> "RealtimeClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def is_open(self) -> bool:
        return self._ws is not None and not self.closed.is_set()

    # --- sending ---------------------------------------------------------------------------------

    def next_event_id(self) -> str:
        return f"{self._prefix}{next(self._ids)}"

    async def send(self, event: dict, *, validate: bool | None = None) -> str:
        """Send one client event (an `event_id` is added if missing) and return its `event_id`.

        It is validated against the `openai` models first when `validate` (default: `validate_sent`)."""
        event = {**event}
        event.setdefault("event_id", self.next_event_id())
        if self.validate_sent if validate is None else validate:
            validate_client_event(event)
        if self.closed.is_set():
            raise RealtimeClosed(self.close_code, self.close_reason)
        self.tracker.sent(event)
        if self.recorder is not None:
            self.recorder.sent(event)
        await self._write(json.dumps(event))
        return event["event_id"]

    async def send_audio(self, pcm: bytes) -> str:
        """Append PCM16 24 kHz mono audio to the input buffer (10 a second per learner: the hot path).

        Outside DEBUG nothing is validated (PARLA_VALIDATE_EVENTS); with it, only the first append of the
        session, since every append has the same shape and only its audio differs. The JSON is written
        here: base64 holds no character JSON escapes, and `json.dumps` of the event cost four times the
        rest of the append, scanning the audio for them (bench/hotpath.py)."""
        if self.validate_sent and not self._append_validated:
            self._append_validated = True
            return await self.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}, validate=True)
        if self.closed.is_set():
            raise RealtimeClosed(self.close_code, self.close_reason)
        event_id = self.next_event_id()
        if self.recorder is not None:  # the learner's audio is never recorded: its length only
            self.recorder.sent({"type": "input_audio_buffer.append", "event_id": event_id, "audio_bytes": len(pcm)})
        await self._write(audio_append_json(event_id, pcm))
        return event_id

    async def _write(self, text: str) -> None:
        try:
            await self._ws.send(text)
        except websockets.ConnectionClosed as exc:
            raise RealtimeClosed(exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else "") from exc

    async def request(
        self, event: dict, expect: str | Predicate, timeout: float, tolerate: frozenset[str] = frozenset()
    ) -> Any:
        """Send `event` and wait for the server event that confirms it.

        `expect` is an event type or a predicate over parsed events. The waiter is registered before
        the event is sent, so a fast answer cannot be missed. Raises RealtimeRequestError if an `error`
        event names this event's id, TimeoutError if nothing arrives within `timeout` seconds.
        """
        event = {**event}
        event_id = event.setdefault("event_id", self.next_event_id())
        future = self._expect(expect, event_id, event.get("type"))
        if tolerate:
            self._tolerated[event_id] = tolerate
        try:
            await self.send(event)
        except BaseException:
            future.cancel()
            raise
        return await self._wait(future, timeout)

    async def wait_for(self, expect: str | Predicate, timeout: float) -> Any:
        """The next server event matching `expect` (TimeoutError after `timeout` seconds)."""
        return await self._wait(self._expect(expect, None), timeout)

    def expect(self, expect: str | Predicate, event_id: str | None = None) -> asyncio.Future:
        """A future for the next matching event, registered now (await it with `wait`)."""
        return self._expect(expect, event_id)

    async def wait(self, future: asyncio.Future, timeout: float) -> Any:
        return await self._wait(future, timeout)

    async def cancel_response(self, response_id: str, timeout: float) -> str:
        """Cancel `response_id` and wait for its `response.done`; returns the status it ended with.

        A `response_cancel_not_active` error naming our cancel means the response had already
        finished: that is success ("completed"), and the tracker learns it is no longer active.
        """
        try:
            done = await self.request(
                {"type": "response.cancel", "response_id": response_id},
                expect=lambda e: e.type == "response.done" and e.response.id == response_id,
                timeout=timeout,
                tolerate=frozenset({CANCEL_NOT_ACTIVE}),
            )
            return done.response.status
        except RealtimeRequestError as exc:
            if exc.code != CANCEL_NOT_ACTIVE:
                raise
            self.tracker.mark_finished(response_id)
            return "completed"

    async def truncate_played(self, item_id: str | None, played_ms: int, timeout: float) -> bool:
        """Cut an assistant audio item where the learner stopped hearing it (confirmed by
        `conversation.item.truncated`); False when there is nothing to cut. Never a made-up item id."""
        if not self.tracker.is_truncatable(item_id, played_ms):
            return False
        await self.request(
            {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": played_ms},
            expect=lambda e: e.type == "conversation.item.truncated" and e.item_id == item_id,
            timeout=timeout,
        )
        self.log.info("item truncated", extra={"item_id": item_id, "audio_end_ms": played_ms})
        return True

    async def delete_item(self, item_id: str, timeout: float) -> None:
        """Remove an item from the upstream conversation (confirmed by `conversation.item.deleted`)."""
        await self.request(
            {"type": "conversation.item.delete", "item_id": item_id},
            expect=lambda e: e.type == "conversation.item.deleted" and e.item_id == item_id,
            timeout=timeout,
        )
        self.log.info("item deleted", extra={"item_id": item_id})

    async def ping(self, timeout: float) -> float:
        """Websocket ping upstream; returns the round trip in seconds once the pong arrives."""
        pong = await self._ws.ping()
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
        # arrives as the awaited future completes, and then the caller's task never stops.
        async with asyncio.timeout(timeout):
            return await pong

    async def _keepalive(self) -> None:
        """Notice an upstream that stopped answering (a hung process; a network path that drops packets
        without a reset): its socket stays open and silent, in any phase of the session. A websocket
        ping every `keepalive` seconds; no pong within `keepalive` seconds of the loop keeping up
        (tasks.wait_responsive: a server whose own loop stalls does not blame the upstream for it;
        websockets' ping_timeout counts wall-clock time) and the connection is aborted, `went_silent`
        set, and the reader ends as on any close: silence is noticed within 2 x `keepalive` (at most
        MAX_STRETCH times that on a loaded server)."""
        while True:
            await asyncio.sleep(self.keepalive)  # the ping period, not a settle wait
            try:
                pong = await self._ws.ping()
                await wait_responsive(pong, self.keepalive)
            except websockets.ConnectionClosed:
                return
            except TimeoutError:
                self.went_silent = True
                self.log.warning("upstream stopped answering", extra={"keepalive": self.keepalive})
                self._ws.transport.abort()  # no close handshake with a peer that answers nothing
                return

    # --- receiving -------------------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                if self.recorder is not None:
                    self.recorder.read(raw)
                try:
                    event, lenient = read_server_event(raw)
                except ValueError as exc:  # not even a JSON object with a type: nothing to act on
                    self.log.warning("unreadable upstream event", extra={"error": str(exc), "raw": str(raw)[:200]})
                    continue
                if lenient is not None:
                    self._read_leniently(lenient)
                elif event.type not in _seen_types:
                    _note_unknown_fields(event, self.log)
                if event.type == "error" and not event.error.event_id:
                    self._attribute(event.error)
                self.tracker.feed(event)
                metrics.upstream_event(event)
                if event.type == "session.created":
                    self.session_created = True
                elif event.type == "error":
                    self.last_error = event.error
                claimed = self._resolve(event)
                if not self.session_created:
                    continue  # an error before session.created is a refusal: connect() raises it
                if self.handler is not None and not claimed:
                    try:
                        await self.handler(event)
                    except Exception:  # one bad event must not end the session's read loop
                        self.log.exception("event handler failed", extra={"type": event.type})
        except websockets.ConnectionClosed:
            pass
        finally:
            rcvd = getattr(self._ws, "close_code", None)
            self.close_code = rcvd
            self.close_reason = getattr(self._ws, "close_reason", "") or ""
            self.closed.set()
            self._fail_waiters(RealtimeClosed(self.close_code, self.close_reason))
            if self.recorder is not None:
                self.recorder.closed(self.close_code, self.close_reason)
            self.log.info("upstream closed", extra={"code": self.close_code, "reason": self.close_reason})

    def _read_leniently(self, lenient: LenientRead) -> None:
        """An event the `openai` models do not know in full was read as `Loose` (schemas.read_server_event):
        logged once per event type and place in this process; in strict mode (PARLA_VALIDATE_EVENTS: tests,
        DEBUG) every time, as an error, and kept in `lenient_reads`, so that a test sees it."""
        self.lenient_reads.append(lenient)
        extra = {"type": lenient.event_type, "where": lenient.where}
        if self.strict_read:
            self.log.error("upstream event does not match the openai models", extra=extra)
        elif (lenient.event_type, lenient.where) not in _lenient_logged:
            _lenient_logged.add((lenient.event_type, lenient.where))
            self.log.warning("upstream event read leniently (a newer API version?)", extra=extra)

    def _expect(self, expect: str | Predicate, event_id: str | None, event_type: str | None = None) -> asyncio.Future:
        predicate = (lambda e, t=expect: e.type == t) if isinstance(expect, str) else expect
        future = asyncio.get_running_loop().create_future()
        if self.closed.is_set():
            future.set_exception(RealtimeClosed(self.close_code, self.close_reason))
        else:
            self._waiters.append(_Waiter(predicate, future, event_id, event_type))
        return future

    def _attribute(self, error: Any) -> None:
        """An `error` that names no client event: the oldest unanswered one of the kind it is about is
        taken as its cause (tutor/realtime/correlation.py), and its `event_id` written into the error, so
        the tracker, the waiters and the log read it as if the API had sent it."""
        types = correlation.answered_types(error.code, error.param, error.message)
        if not types:
            return
        unanswered = [(w.event_id, w.event_type) for w in self._waiters if w.event_id and not w.future.done()]
        unanswered += [(event_id, "response.create") for event_id in self.tracker.pending_create_ids]
        unanswered += [(item.truncate_event_id, "conversation.item.truncate")
                       for item in self.tracker.items.values() if item.truncate_event_id]
        event_id = correlation.attribute(types, unanswered)
        if event_id is None:
            return
        if isinstance(error, Loose):
            error.to_dict()["event_id"] = event_id
        else:
            error.event_id = event_id
        self.log.info("error attributed to a client event", extra={"code": error.code, "event_id": event_id})

    def _resolve(self, event: Any) -> bool:
        """Hand `event` to the waiters it answers; True if it was an error a request claimed."""
        claimed = False
        if event.type == "error" and event.error.code in self._tolerated.get(event.error.event_id, ()):
            claimed = True
            self.tolerated_errors += 1
        remaining = []
        for waiter in self._waiters:
            if waiter.future.done():
                continue
            if event.type == "error" and waiter.event_id and event.error.event_id == waiter.event_id:
                waiter.future.set_exception(RealtimeRequestError(event.error))
                # A fatal error (key, quota, model access) is also the session's business: not claimed.
                claimed = fatal_error(event.error.code, event.error.type) is None
            elif waiter.predicate(event):
                waiter.future.set_result(event)
            else:
                remaining.append(waiter)
        self._waiters = remaining
        return claimed

    def _fail_waiters(self, exc: Exception) -> None:
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(exc)
                waiter.future.exception()  # retrieved: whoever awaits it still gets the error
        self._waiters = []

    async def _wait(self, future: asyncio.Future, timeout: float) -> Any:
        try:
            # Timed in the loop's responsive time: an overloaded server's own lateness does not fail
            # a request whose answer arrived (tasks.wait_responsive).
            return await wait_responsive(future, timeout)
        finally:
            if not future.done():
                future.cancel()
            self._waiters = [w for w in self._waiters if w.future is not future]
