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
