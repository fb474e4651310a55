"""Owned background tasks: cancelled *and* awaited, without swallowing the caller's cancellation."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(*tasks: asyncio.Task | None) -> None:
    """Cancel `tasks` and return once every one has finished.

    `gather(return_exceptions=True)` collects the tasks' own CancelledErrors; if *our* caller is
    cancelled meanwhile, that cancellation propagates (a bare `suppress(CancelledError)` would eat it).
    """
    owned = [t for t in tasks if t is not None]
    for task in owned:
        task.cancel()
    await asyncio.gather(*owned, return_exceptions=True)
