"""Liveness across server processes: the session heartbeat and the recovery sweep's schedule.

The rules of recovery are in assessments/recovery.py; this module runs them in a server process:
`keep_alive` is a running session's heartbeat task (owned by TutorSessionRuntime), `Sweeper` sweeps
when the process starts serving and then every PARLA_HEARTBEAT_SECONDS, and `start_with_daphne`
ties the sweeper to the Daphne server's lifetime.

Why not ASGI lifespan: Daphne does not implement the lifespan protocol (django/daphne#264, open
since 2019; Daphne 4.2 sends no lifespan scope). Daphne runs on Twisted's asyncio reactor, both
as `daphne config.asgi:application` and as Django's `manage.py runserver` (daphne's runserver), and
the reactor is installed before config.asgi is imported: `reactor.callWhenRunning` starts the
sweeper once the server runs, a "before shutdown" trigger cancels and awaits it.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError

from assessments import recovery, services
from assessments.grading import get_grader
from tutor.realtime.tasks import cancel_and_wait

logger = logging.getLogger(__name__)


async def keep_alive(session_id: int) -> None:
    """The running session's heartbeat: while it beats, no process's sweep ends the session."""
    claimer = services.process_id()
    while True:
        await asyncio.sleep(settings.PARLA_HEARTBEAT_SECONDS)  # the heartbeat period, not a settle wait
        try:
            await database_sync_to_async(services.heartbeat)(session_id, claimer)
        except DatabaseError as exc:  # a database blip must not end the session; the next beat retries
            logger.warning("heartbeat failed", extra={"session_id": session_id, "error": str(exc)})


class Sweeper:
    """The periodic recovery sweep of one server process (an owned task: `stop` cancels and awaits it)."""

    def __init__(self, interval: float | None = None):
        self.interval = settings.PARLA_HEARTBEAT_SECONDS if interval is None else interval
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name="recovery-sweep")

    async def stop(self) -> None:
        await cancel_and_wait(self.task)

    async def _run(self) -> None:
        grader = get_grader()
        logger.info("recovery sweep started", extra={"claimer": services.process_id(), "interval": self.interval})
        while True:
            try:
                await recovery.sweep(grader)
            except Exception:  # logged; the next sweep tries again
                logger.exception("recovery sweep failed")
            await asyncio.sleep(self.interval)  # the sweep period, not a settle wait


def start_with_daphne() -> Sweeper | None:
    """Run a Sweeper for as long as this process's Daphne server runs (nothing outside Daphne)."""
    if "twisted.internet.reactor" not in sys.modules:
        return None  # not a Daphne server process (tests, shells, management commands)
    from twisted.internet import defer, reactor

    sweeper = Sweeper()
    # Startup triggers fire before the reactor's asyncio loop turns: callLater(0) runs inside it.
    reactor.callWhenRunning(reactor.callLater, 0, sweeper.start)
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.Deferred.fromFuture(asyncio.ensure_future(sweeper.stop()))
    )
    return sweeper
