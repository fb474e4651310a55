"""Owned background tasks: cancelled *and* awaited, without swallowing the caller's cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine


async def cancel_and_wait(*tasks: asyncio.Task | None) -> None:
    """Cancel `tasks` and return once every one has finished.

    `gather(return_exceptions=True)` collects the tasks' own CancelledErrors; if *our* caller is
    cancelled meanwhile, that cancellation propagates (a bare `suppress(CancelledError)` would eat it).
    """
    owned = [t for t in tasks if t is not None]
    for task in owned:
        task.cancel()
    await asyncio.gather(*owned, return_exceptions=True)


class OwnedTasks:
    """The tasks one owner (a session, a connection) started: tracked from their start until they end,
    and all cancelled and awaited by `cancel_all()`, so that none outlives its owner."""

    def __init__(self, owner: str):
        self.owner = owner
        self.running: set[asyncio.Task] = set()

    def spawn(self, coro: Coroutine, name: str) -> asyncio.Task:
        task = asyncio.create_task(coro, name=f"{name}-{self.owner}")
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        return task

    async def cancel_all(self) -> None:
        """Cancel and await every running task but the calling one (a task may close its own owner)."""
        current = asyncio.current_task()
        await cancel_and_wait(*[t for t in self.running if t is not current])

    def __len__(self) -> int:
        return len(self.running)


LAG_TICK = 0.1  # seconds: how finely a wait notices that the event loop runs late
MAX_STRETCH = 3.0  # a wait lasts at most this many times its timeout, however late the loop runs


async def wait_responsive(future: asyncio.Future, timeout: float) -> object:
    """`future`'s result, where `timeout` counts only the time the event loop was keeping up.

    A server process at its limit runs every callback late: the answer a wait expects may have
    reached the socket in time and still not been handled before a wall-clock timeout fires, and the
    learner would see a failure that is the server's own slowness (issue 14: `playback.flushed`
    answers arriving "after the handover gave up"). So the wait is charged in ticks of LAG_TICK: a tick
    that took longer than that because the loop was late is charged LAG_TICK only. A peer that never
    answers still times out, after at most MAX_STRETCH x `timeout`. The future is not cancelled on
    timeout (the caller decides), and TimeoutError is raised as by `asyncio.timeout`.
    """
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout * MAX_STRETCH
    charged = 0.0
    while not future.done():
        step = min(LAG_TICK, timeout - charged)
        if step <= 0 or loop.time() >= give_up:
            raise TimeoutError
        await asyncio.wait([future], timeout=step)
        charged += step
    return future.result()
