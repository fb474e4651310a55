"""Per-frame cost of the relay's hot path, before and after issue 14's changes (a micro benchmark).

    .venv/bin/python bench/hotpath.py [--repeat 3000] [--no-write]

One process, no server, seconds of CPU: it times, per 100 ms audio frame (4,800 bytes of PCM, 6,400
base64 characters), each step the relay runs for every frame, the way it ran before (re-created here
explicitly) and the way it runs now (Parla's own code):

- an upstream `response.output_audio.delta`: inflate (permessage-deflate) + parse (the `openai` union
  in pydantic's smart mode) + base64 decode, against parse (the union discriminated on `type`) + decode;
- the events that carry a conversation item (`response.output_item.done`, and `response.done` with its
  output list): parsed with the top-level union discriminated on `type` but the item union nested in
  them in smart mode, against every union discriminated (`tutor.realtime.schemas`);
- a learner frame sent upstream as `input_audio_buffer.append`: base64 + validation + JSON + deflate,
  against base64 written into the JSON text directly (no validation outside DEBUG, no compression);
- the GIL convoy: a socket send and receive on the event loop's thread (two system calls, each giving
  up the GIL) beside a thread running Python (the database thread compiling a query), at the switch
  interval the server had before (1 ms) and has now (0.1 ms, `config/asgi.py`);
- a learner frame through the consumer: Channels' `AsyncConsumer.dispatch` (a hop to the sync thread
  for `close_old_connections` before every message) against `TutorConsumer.dispatch`, idle and while
  the sync thread runs other sessions' database writes (2 ms each, back to back).

Prints a table and, unless --no-write, puts it in docs/benchmarks.md under "## Hot path" (the rest
of that file is left as it is). The full load ladder is bench/load.py's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import socket
import statistics
import sys
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import typing  # noqa: E402
from typing import Annotated, Union  # noqa: E402

import numpy as np  # noqa: E402
from channels.consumer import AsyncConsumer  # noqa: E402
from channels.db import database_sync_to_async  # noqa: E402
from openai.types.realtime import RealtimeServerEvent  # noqa: E402
from pydantic import Discriminator, TypeAdapter  # noqa: E402
from doc import write_section  # noqa: E402
from websockets.extensions.permessage_deflate import PerMessageDeflate  # noqa: E402
from websockets.frames import Frame, Opcode  # noqa: E402

from tutor.consumers import TutorConsumer  # noqa: E402
from tutor.realtime.client import audio_append_json, parse_server_event, validate_client_event  # noqa: E402
from tutor.realtime.simulator.audio import synthesize  # noqa: E402

SECTION = "## Hot path"

smart_union = TypeAdapter(RealtimeServerEvent)  # what Parla parsed with before
# What it parsed with after the first round: the top level discriminated on `type`, the unions nested
# in the events (the conversation item's) still in smart mode.
top_level_only = TypeAdapter(
    Annotated[Union[typing.get_args(typing.get_args(RealtimeServerEvent)[0])], Discriminator("type")]
)
ASSISTANT_ITEM = {
    "id": "item_MYkHjE1P7oqjvlSpFAgFE", "object": "realtime.item", "type": "message", "status": "completed",
    "role": "assistant",
    "content": [{"type": "output_audio", "transcript": "Hello! Let's have a little chat. Where are you from?"}],
}
ITEM_EVENTS = {  # as the simulator sends them (tutor.realtime.simulator.conversation)
    "response.output_item.done": {
        "type": "response.output_item.done", "event_id": "event_GLPqFccePSngFMVcVi5Xw",
        "response_id": "resp_2V2vSVYZLyoeK3FFGgEIH", "output_index": 0, "item": ASSISTANT_ITEM,
    },
    "response.done": {
        "type": "response.done", "event_id": "event_1kAimMZUVOtT156HTMFJH",
        "response": {
            "object": "realtime.response", "id": "resp_2V2vSVYZLyoeK3FFGgEIH", "status": "completed",
            "status_details": None, "output": [ASSISTANT_ITEM], "conversation_id": "conv_0rEVAr418D693Bp2J3zDb",
            "output_modalities": ["audio"], "max_output_tokens": "inf",
            "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}},
            "usage": {
                "total_tokens": 120, "input_tokens": 1, "output_tokens": 119,
                "input_token_details": {"text_tokens": 1, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": 0},
                "output_token_details": {"text_tokens": 19, "audio_tokens": 100},
            },
            "metadata": None,
        },
    },
}


def speech_frame() -> bytes:
    """100 ms of the simulator's synthesized speech with a microphone's noise floor (about -50 dBFS)."""
    pcm = np.frombuffer(synthesize("Hola, me llamo Ana y vivo en Madrid.", "marin", 2000), dtype="<i2")
    noise = np.random.default_rng(1).normal(0, 100, pcm.size)
    noisy = np.clip(pcm.astype(float) + noise, -32768, 32767).astype("<i2")
    return noisy[12000:14400].tobytes()


def deflate_pair() -> tuple[PerMessageDeflate, PerMessageDeflate]:
    """websockets' permessage-deflate as both ends negotiate it by default (context takeover, 15 bits)."""
    sender = PerMessageDeflate(False, False, 15, 15)
    receiver = PerMessageDeflate(False, False, 15, 15)
    return sender, receiver


def per_call_us(fn, repeat: int) -> float:
    """Median of 5 runs of `repeat` calls, in microseconds per call."""
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        runs.append((time.perf_counter() - start) / repeat * 1e6)
    return statistics.median(runs)


def upstream_delta(pcm: bytes, repeat: int) -> tuple[float, float, float, float]:
    raw = json.dumps(
        {
            "type": "response.output_audio.delta",
            "event_id": "event_C1",
            "response_id": "resp_C1",
            "item_id": "item_C1",
            "output_index": 0,
            "content_index": 0,
            "delta": base64.b64encode(pcm).decode(),
        }
    )
    sender, receiver = deflate_pair()
    compressed = sender.encode(Frame(Opcode.TEXT, raw.encode()))

    def before():
        frame = receiver.decode(Frame(Opcode.TEXT, compressed.data, rsv1=True))
        base64.b64decode(smart_union.validate_json(frame.data).delta)

    def after():
        base64.b64decode(parse_server_event(raw).delta)

    assert smart_union.validate_json(raw) == parse_server_event(raw)
    decode_only = per_call_us(lambda: base64.b64decode(raw[raw.index('"delta"') + 9 : -2]), repeat)
    ratio = len(compressed.data) / len(raw)
    return per_call_us(before, repeat), per_call_us(after, repeat), decode_only, ratio


def item_event(kind: str, repeat: int) -> tuple[float, float]:
    raw = json.dumps(ITEM_EVENTS[kind])
    parsed, before = parse_server_event(raw), top_level_only.validate_json(raw)
    assert isinstance(parsed, type(before)) and parsed.model_dump() == before.model_dump()
    return per_call_us(lambda: top_level_only.validate_json(raw), repeat), per_call_us(lambda: parse_server_event(raw), repeat)


SWITCH_BEFORE, SWITCH_AFTER = 0.001, 0.0001  # seconds: config/asgi.py's sys.setswitchinterval, then and now


def convoy_us(interval: float, sends: int) -> float:
    """Median of five runs: microseconds per socket send + receive beside a thread running Python."""
    default = sys.getswitchinterval()
    sys.setswitchinterval(interval)
    stop, running = threading.Event(), threading.Event()

    def python_work() -> None:
        while not stop.is_set():
            sum(range(300))
            running.set()

    worker = threading.Thread(target=python_work, daemon=True)
    worker.start()
    running.wait()
    time.sleep(0.05)  # the two threads trading the GIL, as under load, before the clock starts
    a, b = socket.socketpair()
    try:
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(sends):
                a.send(b"x")
                b.recv(1)
            runs.append((time.perf_counter() - start) / sends * 1e6)
        return statistics.median(runs)
    finally:
        stop.set()
        worker.join()
        a.close()
        b.close()
        sys.setswitchinterval(default)


def learner_append(pcm: bytes, repeat: int) -> tuple[float, float, float]:
    sender, _ = deflate_pair()

    def event():
        return {"type": "input_audio_buffer.append", "event_id": "evt_parla_1", "audio": base64.b64encode(pcm).decode()}

    def before():
        e = event()
        validate_client_event(e)
        sender.encode(Frame(Opcode.TEXT, json.dumps(e).encode()))

    def after():  # Parla's own: the JSON written directly (tutor.realtime.client.audio_append_json)
        audio_append_json("evt_parla_1", pcm).encode()

    raw = json.dumps(event()).encode()
    ratio = len(sender.encode(Frame(Opcode.TEXT, raw)).data) / len(raw)
    return per_call_us(before, repeat), per_call_us(after, repeat), ratio


class StubRuntime:
    async def learner_audio(self, pcm: bytes) -> None:
        pass


def stub_consumer() -> TutorConsumer:
    consumer = TutorConsumer()
    consumer.scope = {"type": "websocket"}
    consumer.open = True
    consumer.runtime = StubRuntime()
    consumer.learner = None
    consumer.inbox = None  # nothing queued behind the frame
    clock = time.monotonic
    from tutor.realtime import wire

    consumer.limits = {"audio": wire.RateLimit(1e9, 10**9, clock)}
    return consumer


async def dispatch_us(pcm: bytes, repeat: int, *, old: bool, busy: bool) -> float:
    """Wall time of one audio frame's dispatch (median over `repeat` frames, one at a time)."""
    consumer = stub_consumer()
    message = {"type": "websocket.receive", "bytes": pcm}
    dispatch = (lambda: AsyncConsumer.dispatch(consumer, message)) if old else (lambda: consumer.dispatch(message))
    stop = asyncio.Event()

    async def database_writes():  # other sessions' turns, probes, heartbeats on the one sync thread
        while not stop.is_set():
            await database_sync_to_async(time.sleep)(0.002)

    writers = [asyncio.create_task(database_writes()) for _ in range(4)] if busy else []
    samples = []
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            await dispatch()
            samples.append((time.perf_counter() - start) * 1e6)
            await asyncio.sleep(0)  # let the writers queue up, as other sessions would
    finally:
        stop.set()
        await asyncio.gather(*writers)
    return statistics.median(samples)


def table(rows: list[tuple[str, float, float, str]]) -> str:
    lines = ["| per 100 ms frame | before (us) | after (us) | note |", "|---|---|---|---|"]
    for name, before, after, note in rows:
        lines.append(f"| {name} | {before:.1f} | {after:.1f} | {note} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3000)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()

    pcm = speech_frame()
    delta_before, delta_after, decode_only, delta_ratio = upstream_delta(pcm, args.repeat)
    append_before, append_after, append_ratio = learner_append(pcm, args.repeat)
    items = {kind: item_event(kind, args.repeat) for kind in ITEM_EVENTS}
    sends = max(100, args.repeat // 10)
    convoy_before, convoy_after = convoy_us(SWITCH_BEFORE, sends), convoy_us(SWITCH_AFTER, sends)
    a, b = socket.socketpair()
    alone = per_call_us(lambda: (a.send(b"x"), b.recv(1)), args.repeat)
    a.close()
    b.close()
    n = max(200, args.repeat // 10)
    idle_old = asyncio.run(dispatch_us(pcm, n, old=True, busy=False))
    idle_new = asyncio.run(dispatch_us(pcm, n, old=False, busy=False))
    busy_old = asyncio.run(dispatch_us(pcm, n, old=True, busy=True))
    busy_new = asyncio.run(dispatch_us(pcm, n, old=False, busy=True))
    rows = [
        (
            "upstream audio delta: receive + parse + base64 decode",
            delta_before,
            delta_after,
            f"base64 decode alone {decode_only:.1f} us; deflate kept {delta_ratio:.0%} of the bytes",
        ),
        *(
            (f"upstream `{kind}` (one assistant message item): parse", before, after,
             "per event, not per frame; the top level was discriminated in both")
            for kind, (before, after) in items.items()
        ),
        (
            "learner frame upstream: append event + send encoding",
            append_before,
            append_after,
            f"deflate kept {append_ratio:.0%} of the bytes",
        ),
        (
            "socket send + receive on the loop's thread beside a thread running Python (GIL switch interval 1 -> 0.1 ms)",
            convoy_before,
            convoy_after,
            f"per pair, not per frame (a frame makes several); alone {alone:.1f} us; median of 5 runs",
        ),
        ("learner frame through the consumer (dispatch), idle", idle_old, idle_new, "median wall time"),
        (
            "learner frame through the consumer, sync thread busy with database writes",
            busy_old,
            busy_new,
            "median wall time; 4 writers of 2 ms each",
        ),
    ]
    header = (
        f"`.venv/bin/python bench/hotpath.py --repeat {args.repeat}` on {date.today().isoformat()}, "
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), Python {platform.python_version()}, "
        "a shared machine (other processes ran): compare the columns, not runs."
    )
    text = table(rows)
    print(header)
    print(text)
    if not args.no_write:
        write_section(Path(args.output), "hotpath", f"{SECTION}\n\n{header}\n\n{text}\n\n{EXPLANATION}")
        print(f"wrote {args.output}")


EXPLANATION = """\
What changed (issue 14), each step in the table:

- *Parse*: `openai` marks its event unions with its own `PropertyInfo(discriminator="type")`, which
  pydantic does not read; `TypeAdapter(RealtimeServerEvent)` therefore tried the members in turn.
  `tutor.realtime.schemas` adds pydantic's `Discriminator("type")`: same models, one
  lookup. An audio delta now costs little more than its base64 decode. The same holds for the unions
  nested in the events, above all the conversation item's (nine members, three of them `"message"`,
  told apart by `role`), which every item event and `response.done` carry: `tutor.realtime.schemas`
  discriminates those too, through subclasses of the `openai` event classes that only re-annotate
  the field (the items are `openai`'s own classes).
- *GIL convoy*: the event loop gives up the GIL at every system call (socket sends and receives,
  Twisted's epoll changes, a websocket mask's random bytes, numpy and cffi calls). While another
  thread runs Python (Channels' database thread compiling and sending queries), that thread takes the
  GIL each time, and the loop gets it back only after the switch interval. The server's interval was
  5 ms (Python's default), then 1 ms, and is now 0.1 ms (`config/asgi.py`; at 0.2 ms the pair varied
  37-133 us between runs, at 0.1 ms 41-57 us).
- *Compression*: websockets negotiates permessage-deflate by default. On base64 PCM it saves about a
  quarter of the bytes on a loopback or datacenter link, for the CPU in the table on every frame, both
  ways. Parla's upstream client and the simulator now use `compression=None`.
- *Validation*: outgoing events are validated against the `openai` models only with
  `PARLA_VALIDATE_EVENTS` (default: DEBUG), and then only the session's first audio append.
- *Append*: the `input_audio_buffer.append` is written as JSON text directly
  (`tutor.realtime.client.audio_append_json`): `json.dumps` of the event scanned the 6,400 base64
  characters for characters to escape, of which base64 has none.
- *Dispatch*: Channels' `AsyncConsumer.dispatch` awaits `close_old_connections` in the sync thread
  before every message, so each microphone frame queued behind every session's database writes.
  `TutorConsumer.dispatch` skips that for every message of the learner's socket (frames, playback
  reports and controls touch no database; database calls go through `database_sync_to_async`, which
  cleans up around each call). Not in the table, as it is counted in event-loop turns rather than
  microseconds: Channels' dispatch loop takes three turns of the event loop per message, and
  `TutorConsumer.dispatch` handles what already waits in the socket's queue in the same turn
  (`tutor/tests/test_consumer.py`: 40 queued messages in at most 3 turns, 120 before); under load a
  turn takes tens of milliseconds, so this was the second of queueing the load ladder measured."""


if __name__ == "__main__":
    main()
