"""A record of one upstream session's traffic, and its replay (PARLA_UPSTREAM_LOG, issue 25).

With PARLA_UPSTREAM_LOG set to a folder, every upstream session (tutor, narrator) writes its events there
as JSON lines, one file per session: what was sent ("out") and read ("in"), with the seconds since the
session opened, and how the socket closed. Audio is kept as its byte count only: the base64 `delta` of
`response.output_audio.delta` and the `audio` of `input_audio_buffer.append` (the learner's voice) are
replaced by `"<field>_bytes": N`. The API key is never in an event (it travels in a header, which is not
recorded).

    {"replay": "header", "session": "tutor", "source": "...", "opened": "2026-12-07T21:30:00+00:00"}
    {"t": 0.012, "dir": "in", "event": {"type": "session.created", ...}}
    {"t": 0.013, "dir": "out", "event": {"type": "session.update", ...}}
    {"t": 0.410, "dir": "in", "event": {"type": "response.output_audio.delta", ..., "delta_bytes": 4800}}
    {"t": 9.000, "dir": "close", "code": 1000, "reason": ""}

`ReplayServer` plays such a file back against a client: it sends the "in" events in order (audio as
silence of the recorded length), waits before each "out" event until the client sent one of that type,
and closes as recorded. Files built from public captures (tutor/tests/replays/) carry their source in
the header; events that are not from the capture but frame it (a `session.created` for the client to
start on) are marked `"framing": true`.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

AUDIO_FIELDS = {"response.output_audio.delta": "delta", "input_audio_buffer.append": "audio"}


def _without_audio(event: dict) -> dict:
    field = AUDIO_FIELDS.get(event.get("type"))
    if field is None or not isinstance(event.get(field), str):
        return event
    encoded = event[field]
    event = {k: v for k, v in event.items() if k != field}
    event[f"{field}_bytes"] = len(encoded) * 3 // 4 - encoded[-2:].count("=")
    return event


def _with_audio(event: dict) -> dict:
    """An event of a record with its audio back, as silence of the recorded length."""
    field = AUDIO_FIELDS.get(event.get("type"))
    if field is None or f"{field}_bytes" not in event:
        return event
    count = int(event[f"{field}_bytes"] or 0)
    event = {k: v for k, v in event.items() if k != f"{field}_bytes"}
    event[field] = base64.b64encode(bytes(count)).decode("ascii")
    return event


class UpstreamRecorder:
    """Writes one upstream session's events to `<folder>/<time>-<name>-<token>.jsonl`."""

    def __init__(self, folder: str | Path, name: str):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now(datetime.timezone.utc)
        self.path = folder / f"{stamp:%Y%m%dT%H%M%S}-{name}-{secrets.token_hex(3)}.jsonl"
        self._file = self.path.open("w", encoding="utf-8")
        self._start = time.monotonic()
        self._write({"replay": "header", "session": name, "opened": stamp.isoformat(timespec="seconds")})

    def sent(self, event: dict) -> None:
        self._event("out", event)

    def read(self, raw: str | bytes) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            event = {"unreadable": str(raw)[:200]}
        self._event("in", event if isinstance(event, dict) else {"unreadable": str(raw)[:200]})

    def closed(self, code: int | None, reason: str) -> None:
        if not self._file.closed:
            self._write({"t": self._t(), "dir": "close", "code": code, "reason": reason})
            self._file.close()

    def _event(self, direction: str, event: dict) -> None:
        if not self._file.closed:
            self._write({"t": self._t(), "dir": direction, "event": _without_audio(event)})

    def _t(self) -> float:
        return round(time.monotonic() - self._start, 3)

    def _write(self, record: dict) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()  # a process that dies keeps what it wrote


@dataclass
class Replay:
    header: dict
    records: list[dict]  # {"dir": "in"|"out"|"close", ...} in order

    @classmethod
    def load(cls, path: str | Path) -> "Replay":
        lines = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        if not lines or lines[0].get("replay") != "header":
            raise ValueError(f"{path}: not an upstream record (no header line)")
        return cls(lines[0], lines[1:])

    @property
    def sent(self) -> list[dict]:
        """The client's events of the record, audio as silence (what a client replays on its side)."""
        return [_with_audio(r["event"]) for r in self.records if r["dir"] == "out"]


class ReplayServer:
    """A websocket server that plays one `Replay` to each client that connects (see the module)."""

    def __init__(self, replay: Replay, wait_timeout: float = 5.0):
        self.replay = replay
        self.wait_timeout = wait_timeout
        self.received: list[dict] = []  # what clients sent
        self.unmatched: list[str] = []  # "out" records no client event of that type answered in time
        self._server: Any = None

    @property
    def url(self) -> str:
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/v1/realtime"

    async def __aenter__(self) -> "ReplayServer":
        self._server = await serve(self._play, "127.0.0.1", 0, max_size=None, compression=None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close(close_connections=True)
        await self._server.wait_closed()

    async def _play(self, ws: ServerConnection) -> None:
        incoming: asyncio.Queue = asyncio.Queue()

        async def receive() -> None:
            async for message in ws:
                event = json.loads(message)
                self.received.append(event)
                incoming.put_nowait(event)

        reader = asyncio.create_task(receive())
        try:
            for record in self.replay.records:
                if record["dir"] == "in":
                    await ws.send(json.dumps(_with_audio(record["event"])))
                elif record["dir"] == "out":
                    await self._wait_for(incoming, record["event"]["type"])
                elif record["dir"] == "close":
                    await ws.close(record.get("code") or 1000, record.get("reason") or "")
                    return
            await ws.wait_closed()
        except ConnectionClosed:
            pass
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _wait_for(self, incoming: asyncio.Queue, kind: str) -> None:
        try:
            async with asyncio.timeout(self.wait_timeout):
                while (await incoming.get()).get("type") != kind:
                    pass
        except TimeoutError:
            self.unmatched.append(kind)
