"""Demo mode's in-process simulator keeps nothing per finished session (issue 27, item 4).

A few hundred short sessions against the simulator as demo mode runs it (in this process, on this
event loop: tutor.upstream starts it so), each one the parts of a placement the simulator serves: the
session configured, the tutor's greeting, a spoken answer (server VAD, commit, transcription, the
tutor's reply with its record_probe call), a written answer and its reply, then the close. The
Python heap allocated after a warm-up and still held at the end (tracemalloc) must stay flat.

What it found: pydantic-core caches every string it parses from JSON in a process-wide cache of 16,384
entries, so the ids of finished sessions' events stayed held (about 7 KiB a session here, up to about
1.1 MiB); Parla's event adapters now cache keys only (tutor/realtime/schemas.py).
"""

import asyncio
import gc
import logging
import time
import tracemalloc

import pytest

from tutor import persona
from tutor.realtime.client import RealtimeClient
from tutor.realtime.simulator import RealtimeSimulator, SimulatorKnobs
from tutor.testing.learners import frames, spoken_answer

WARM_UP, MEASURED = 50, 170
ALLOWED_GROWTH = 150 * 1024  # bytes over MEASURED sessions: under 1 KiB a session (issue 27 saw ~370 KiB)
ANSWER = frames(spoken_answer("B1"))


async def short_session(url: str) -> None:
    client = RealtimeClient(url, model="gpt-realtime-2.1", name="tutor")
    config = persona.tutor_session_config(
        target_language="es", native_language="en", level="A1", voice="marin",
        transcription_model="gpt-4o-mini-transcribe", speed_beginner=0.9, speed_default=1.0, reasoning_effort=None,
    )
    await client.open(config, 5)
    try:
        await client.request({"type": "response.create"}, "response.done", 10)
        replied = client.expect("response.done")
        for frame in ANSWER:
            await client.send_audio(frame)
        await client.wait(replied, 10)
        await client.request({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Me llamo Ana."}]}},
            "conversation.item.added", 5)
        await client.request({"type": "response.create"}, "response.done", 10)
    finally:
        await client.close()


def heap() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def test_the_in_process_simulator_keeps_nothing_per_finished_session(caplog):
    caplog.set_level(logging.WARNING)  # the INFO lines of 250 sessions, kept by the test's log capture, are not the server's
    simulator = await RealtimeSimulator(knobs=SimulatorKnobs(pace=0.0), port=0).start()
    started = time.monotonic()
    try:
        for _ in range(WARM_UP):
            await short_session(simulator.url)
        tracemalloc.start(1)  # what is allocated from here on and still held at the end
        before = heap()
        for _ in range(MEASURED):
            await short_session(simulator.url)
        async with asyncio.timeout(5):
            while simulator.connections:  # the last one's server side ends just after the client's close
                await asyncio.sleep(0.01)
        after = heap()
    finally:
        tracemalloc.stop()
        await simulator.stop()
    took = time.monotonic() - started
    print(f"{WARM_UP + MEASURED} sessions in {took:.0f} s; heap {before / 1024:.0f} -> {after / 1024:.0f} KiB "
          f"({(after - before) / MEASURED:.0f} bytes a session)")
    assert after - before < ALLOWED_GROWTH, f"grew {(after - before) / 1024:.0f} KiB over {MEASURED} sessions"
    assert simulator.validation_errors == []
