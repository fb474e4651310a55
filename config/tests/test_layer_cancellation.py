"""A task cancelled during a Redis channel-layer call ends (python/cpython#86296 under redis-py).

redis-py wraps socket writes and reads in `asyncio.wait_for` when a socket timeout is set, and
Python 3.11's `wait_for` swallows a cancellation that arrives as the write completes. A session task
announcing to the teachers' live view when the learner left then ran on, and the disconnect waited
for it until Daphne's kill (seen in CI: the session's end was never written). Against the real Redis,
cancelled after every number of event-loop turns up to ITERATIONS, so the moment the write completes
is among them.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from config.channel_layer import ResilientRedisChannelLayer, redis_channel_layer
from config.tests.test_services import require_service

pytestmark = pytest.mark.services

ITERATIONS = 40


def layer() -> ResilientRedisChannelLayer:
    config = redis_channel_layer(os.environ.get("REDIS_URL", ""), f"cancel-test-{os.getpid()}")["CONFIG"]
    return ResilientRedisChannelLayer(**config)


async def cancelled_after(turns: int, call) -> bool:
    """Whether a task looping on `call` ends, cancelled, within 2 s of one cancel after `turns` loop turns."""

    async def loop():
        while True:
            await call()

    task = asyncio.create_task(loop())
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=2)
    if not done:  # swallowed: end it for good (a second cancel may be swallowed too)
        while not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=0.5)
        return False
    return task.cancelled()


async def test_a_task_cancelled_during_group_send_ends_whenever_the_cancel_comes():
    require_service("REDIS_URL", "redis")
    redis_layer = layer()
    try:
        kept = [await cancelled_after(turns, lambda: redis_layer.group_send("teachers", {"type": "x"})) for turns in range(ITERATIONS)]
    finally:
        await redis_layer.close_pools()
    assert [turns for turns, ended in enumerate(kept) if not ended] == []


async def test_a_timeout_around_a_layer_call_still_fires():
    """The re-raised cancellation is the one `asyncio.timeout` turns into TimeoutError."""
    require_service("REDIS_URL", "redis")
    redis_layer = layer()
    timed_out = 0
    try:
        for _ in range(ITERATIONS):
            try:
                async with asyncio.timeout(0.002):
                    for _ in range(2000):  # bounded: a swallowed timeout ends here, not in a hang
                        await redis_layer.group_send("teachers", {"type": "x"})
            except TimeoutError:
                timed_out += 1
    finally:
        await redis_layer.close_pools()
    assert timed_out == ITERATIONS


async def test_a_receive_cancelled_as_its_blocking_pop_times_out_ends():
    """A consumer's `receive()` (channels-redis loops on BZPOPMIN until a message comes): a cancel that
    arrives as one pop returns empty was swallowed, and the loop blocked again, for good (Daphne then
    killed the handler at shutdown). Receivers on empty channels, each cancelled at a moment spread
    around its pops' end (every 0.2 s here), all end."""
    require_service("REDIS_URL", "redis")
    redis_layer = layer()
    redis_layer.brpop_timeout = 0.2  # the pop returns empty this often (channels-redis: 5 s)

    async def receiver(n: int) -> bool:
        channel = await redis_layer.new_channel()
        task = asyncio.create_task(redis_layer.receive(channel))
        await asyncio.sleep(0.15 + n * 0.004)  # cancel points across 0.15..0.35 s: one pop's end among them
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=2)
        while not task.done():  # swallowed: end it for good, and report it
            task.cancel()
            await asyncio.wait([task], timeout=0.5)
        return bool(done)

    try:
        ended = await asyncio.gather(*(receiver(n) for n in range(ITERATIONS + 10)))
    finally:
        await redis_layer.close_pools()
    assert [n for n, done in enumerate(ended) if not done] == []
