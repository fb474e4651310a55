"""Waiting in tests: poll a condition until it holds, or fail after a timeout. One helper for all tests.

Protocol code waits for events. A test sometimes can only look from outside (the database a server
process writes, the simulator's open connections, a page, Redis): then it polls, never sleeps a fixed
time. Both return the condition's first truthy value and raise AssertionError naming `what` when the
timeout runs out.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

POLL_S = 0.05  # fine enough that no test waits noticeably longer than what it waits for


def wait_until(
    condition: Callable[[], Any], timeout: float = 15.0, what: str = "the condition", *, interval: float = POLL_S,
    pause: Callable[[float], Any] = time.sleep,
) -> Any:
    """Call `condition` until it returns something truthy. `pause(seconds)` waits between calls
    (a browser test passes one that lets Playwright deliver the page's events meanwhile)."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        pause(interval)
    return result


async def until(
    condition: Callable[[], Any], timeout: float = 15.0, what: str = "the condition", *, interval: float = POLL_S
) -> Any:
    """`wait_until` in a coroutine: the loop runs meanwhile. `condition` may return an awaitable
    (e.g. a database query wrapped in `database_sync_to_async`), which is awaited."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(interval)  # a test polling from outside; protocol code waits for events
