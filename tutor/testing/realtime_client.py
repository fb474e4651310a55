"""Test helpers: an in-process simulator and a raw websocket client that validates every event.

The client checks each server event against the official `openai` models
(`RealtimeServerEvent`) and fails the test on the first one that does not validate.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import websockets
from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection

from tutor.realtime.simulator.events import validate_server_event
from tutor.realtime.simulator.knobs import SimulatorKnobs
from tutor.realtime.simulator.server import RealtimeSimulator

# The realtime model the raw test client names by default: the current one, as in config/settings.py
# ("Build a low-latency voice agent: gpt-realtime-2.1", developers.openai.com/api/docs/guides/realtime).
CURRENT_REALTIME_MODEL = "gpt-realtime-2.1"

EventPredicate = Callable[[dict[str, Any]], bool]


@asynccontextmanager
async def start_simulator(**knob_overrides: Any) -> AsyncIterator[RealtimeSimulator]:
    """An in-process simulator on an ephemeral port: pace=0 and validate_output=True by default.

    On exit, fails if any event it emitted did not validate against the openai models.
    """
    settings: dict[str, Any] = {"pace": 0.0, "validate_output": True, **knob_overrides}
    async with RealtimeSimulator(knobs=SimulatorKnobs(**settings), host="127.0.0.1", port=0) as sim:
        yield sim
    assert not sim.validation_errors, f"simulator emitted invalid events: {sim.validation_errors}"


def event_type(name: str) -> EventPredicate:
    return lambda event: event["type"] == name


class RealtimeTestClient:
    """A raw `websockets` client for conformance tests (no Parla code)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        url: str,
        *,
        query: str = f"model={CURRENT_REALTIME_MODEL}",
        api_key: str | None = "sk-test",
        expect_session: bool = True,
    ) -> AsyncIterator[RealtimeTestClient]:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # max_queue=None: a test that stops reading must not stall the closing handshake
        # behind unread frames (websockets would wait close_timeout, 10 s).
        connecting = websockets.connect(f"{url}?{query}", additional_headers=headers, max_size=None, max_queue=None)
        async with connecting as ws:
            client = cls(ws)
            if expect_session:
                created = await client.recv()
                assert created["type"] == "session.created", created
            yield client

    async def send(self, event: dict[str, Any], *, event_id: str | None = None) -> str:
        """Send `event` with an `event_id` (given, the event's own, or a fresh one); returns it."""
        event = dict(event)
        event.setdefault("event_id", event_id or f"evt_{uuid.uuid4().hex[:12]}")
        await self.ws.send(json.dumps(event))
        return event["event_id"]

    async def send_raw(self, payload: str | bytes) -> None:
        await self.ws.send(payload)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next server event, validated against RealtimeServerEvent."""
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(raw, str), "server sent a binary frame"
        event = json.loads(raw)
        try:
            validate_server_event(event)
        except ValidationError as exc:
            raise AssertionError(f"server event does not validate: {event['type']}: {exc}") from exc
        assert isinstance(event.get("event_id"), str) and event["event_id"].startswith("event_"), event
        self.received.append(event)
        return event

    async def collect_until(self, predicate: EventPredicate | str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Events up to and including the first matching `predicate` (or of that type)."""
        match = event_type(predicate) if isinstance(predicate, str) else predicate
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                events.append(await self.recv(timeout))
                if match(events[-1]):
                    return events

    async def wait_for(self, predicate: EventPredicate | str, timeout: float = 5.0) -> dict[str, Any]:
        return (await self.collect_until(predicate, timeout))[-1]

    async def request(self, event: dict[str, Any], expect: str, timeout: float = 5.0) -> dict[str, Any]:
        """Send `event` and return the `expect` event or the `error` carrying its event_id."""
        sent = await self.send(event)
        return await self.wait_for(
            lambda e: e["type"] == expect or (e["type"] == "error" and e["error"].get("event_id") == sent), timeout
        )

    async def append_audio(self, pcm: bytes, chunk_ms: int = 100) -> None:
        """Stream PCM16 24 kHz audio as `input_audio_buffer.append` events of `chunk_ms`."""
        step = chunk_ms * 48
        for start in range(0, len(pcm), step):
            chunk = base64.b64encode(pcm[start : start + step]).decode()
            await self.send({"type": "input_audio_buffer.append", "audio": chunk})
