"""The one source of time for the session's waits that are measured in time rather than for an event.

The playback watch (an item is over once its length, played in real time, plus the margin has
passed), the session's time cap, the handover's keepalive and the process's heartbeat and sweep take
`now()` and `sleep()` from here; protocol waits for a server's answer do not (they are timeouts, and
`tasks.wait_responsive` measures them on the loop). Django-free.

The process runs on `Clock()`, the event loop's own time. Tests can install `Clock(speed=20)`: every
one of those waits then passes twenty times faster in wall time while everything else (sockets,
the simulator, the database) runs as usual, so a test that used to wait out a 2 s playback margin or a
time cap waits a twentieth of it (`installed(...)` restores the previous clock).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class Clock:
    """Seconds on a monotonic clock that runs `speed` times as fast as the event loop's."""

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"a clock's speed must be positive, not {speed!r}")
        self.speed = speed

    def now(self) -> float:
        return asyncio.get_running_loop().time() * self.speed

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time (a period or a budget, never a wait for an event)."""
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    def timeout_at(self, deadline: float | None) -> asyncio.Timeout:
        """`asyncio.timeout_at` for a deadline on this clock (None: no deadline)."""
        if deadline is None:
            return asyncio.timeout_at(None)
        return asyncio.timeout_at(deadline / self.speed)


_current = Clock()


def current() -> Clock:
    """The clock the session's timed waits use now."""
    return _current


def install(clock: Clock) -> Clock:
    """Make `clock` the current one; returns the one it replaces."""
    global _current
    previous, _current = _current, clock
    return previous


@contextlib.contextmanager
def installed(clock: Clock) -> Iterator[Clock]:
    """`clock` is the current one inside the block (tests), the previous one again after it."""
    previous = install(clock)
    try:
        yield clock
    finally:
        install(previous)
