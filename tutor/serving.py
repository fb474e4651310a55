"""What runs for as long as this process's server runs: the recovery sweep and the loop watch.

Daphne does not implement the ASGI lifespan protocol (django/daphne#264, open since 2019; Daphne 4.2
sends no lifespan scope). Daphne runs on Twisted's asyncio reactor, both as `daphne
config.asgi:application` and as Django's `manage.py runserver` (daphne's runserver), and the reactor
is installed before config.asgi is imported: `reactor.callWhenRunning` starts each service once the
server runs, a "before shutdown" trigger cancels and awaits it.

Uvicorn (measured against Daphne by `bench/load.py --servers`) sends the lifespan scope: `Lifespan`
starts the services at `lifespan.startup` and stops them at `lifespan.shutdown`. Only one of the two
paths ever runs in a process: Daphne sends no lifespan scope, and uvicorn installs no reactor.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Protocol

logger = logging.getLogger(__name__)


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


class Lifespan:
    """The ASGI lifespan protocol (asgi.readthedocs.io, "Lifespan Protocol") for servers that send it:
    `services` start once the server runs and are stopped, in reverse order, when it shuts down."""

    def __init__(self, *services: Service):
        self.services = services

    async def __call__(self, scope, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    for service in self.services:
                        service.start()
                except Exception as exc:  # the server then exits: better than serving without them
                    logger.exception("lifespan startup failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for service in reversed(self.services):
                    try:
                        await service.stop()
                    except Exception:  # one service's failure does not keep the others running
                        logger.exception("service stop failed", extra={"service": type(service).__name__})
                await send({"type": "lifespan.shutdown.complete"})
                return
