"""What runs for as long as this process's Daphne server runs: the recovery sweep and the loop watch.

Why not ASGI lifespan: Daphne does not implement the lifespan protocol (django/daphne#264, open
since 2019; Daphne 4.2 sends no lifespan scope). Daphne runs on Twisted's asyncio reactor, both
as `daphne config.asgi:application` and as Django's `manage.py runserver` (daphne's runserver), and
the reactor is installed before config.asgi is imported: `reactor.callWhenRunning` starts each
service once the server runs, a "before shutdown" trigger cancels and awaits it.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Protocol


class Service(Protocol):
    def start(self) -> None: ...  # called inside the running loop; starts the service's own task

    async def stop(self) -> None: ...  # cancels and awaits that task


def start_with_daphne(*services: Service) -> bool:
    """Run `services` for as long as this process's Daphne server runs; nothing outside Daphne
    (tests, shells, management commands). Whether they were scheduled."""
    if "twisted.internet.reactor" not in sys.modules:
        return False
    from twisted.internet import defer, reactor

    for service in services:
        # Startup triggers fire before the reactor's asyncio loop turns: callLater(0) runs inside it.
        reactor.callWhenRunning(reactor.callLater, 0, service.start)
        reactor.addSystemEventTrigger(
            "before", "shutdown", lambda s=service: defer.Deferred.fromFuture(asyncio.ensure_future(s.stop()))
        )
    return True
