"""Waits for an event under overload (issue 14): a server whose event loop runs late does not turn
its own lateness into a timeout the learner sees; a peer that never answers still times out."""

import asyncio
import time

import pytest

from tutor.realtime import tasks
from tutor.realtime.client import RealtimeClient, parse_server_event
from tutor.realtime.tasks import cancel_and_wait, wait_responsive


async def overload(block: float):
    """The event loop of a saturated server: every turn of it takes `block` seconds of other work."""
    while True:
        time.sleep(block)  # noqa: the point is to block the loop, as other sessions' work would
        await asyncio.sleep(0)


async def answered_after(wall_seconds: float) -> tuple[asyncio.Future, asyncio.TimerHandle]:
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    return future, loop.call_later(wall_seconds, future.set_result, "answer")


async def test_an_answer_that_is_late_only_because_the_loop_is_late_is_still_waited_for():
    future, _ = await answered_after(0.6)
    hog = asyncio.create_task(overload(0.2))
    try:
        # Wall clock: 0.6 s > 0.3 s. Responsive time: the loop ran at most a third as fast, under 0.2 s.
        assert await wait_responsive(future, 0.3) == "answer"
    finally:
        await cancel_and_wait(hog)


async def test_the_same_wait_with_a_wall_clock_timeout_fails():  # the failure the above avoids
    future, _ = await answered_after(0.6)
    hog = asyncio.create_task(overload(0.2))
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await asyncio.shield(future)
    finally:
        await cancel_and_wait(hog)


async def test_an_answer_that_never_comes_times_out_on_time_when_idle_and_bounded_when_overloaded():
    loop = asyncio.get_running_loop()
    never = loop.create_future()
    start = loop.time()
    with pytest.raises(TimeoutError):
        await wait_responsive(never, 0.3)
    assert 0.3 <= loop.time() - start < 0.3 + 2 * tasks.LAG_TICK
    hog = asyncio.create_task(overload(0.15))
    try:
        start = loop.time()
        with pytest.raises(TimeoutError):
            await wait_responsive(never, 0.3)
        assert loop.time() - start <= 0.3 * tasks.MAX_STRETCH + 0.5
    finally:
        await cancel_and_wait(hog)
    assert not never.cancelled()  # left to the caller


async def test_realtime_requests_wait_in_responsive_time():
    """RealtimeClient's waits (every confirmed request of the session and the handover) use it."""
    client = RealtimeClient("ws://127.0.0.1:9/v1/realtime")
    loop = asyncio.get_running_loop()
    done = parse_server_event('{"type": "input_audio_buffer.cleared", "event_id": "event_1"}')
    loop.call_later(0.6, client._resolve, done)
    hog = asyncio.create_task(overload(0.2))
    try:
        assert await client.wait_for("input_audio_buffer.cleared", 0.3) is done
    finally:
        await cancel_and_wait(hog)
