"""Liveness across server processes: the session heartbeat and the recovery sweep's schedule.

The rules of recovery are in assessments/recovery.py; this module runs them in a server process:
`heartbeats` beats for every running session of the process (sessions join and leave it), `Sweeper` sweeps
when the process starts serving and then every PARLA_HEARTBEAT_SECONDS, tied to the Daphne server's
lifetime by tutor/serving.py.
"""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError

from assessments import recovery, services
from assessments.grading import get_grader
from tutor.realtime import clock
from tutor.realtime.tasks import cancel_and_wait

logger = logging.getLogger(__name__)


class Heartbeats:
    """The heartbeat of this process's running sessions: while it beats, no process's sweep ends them.

    One task and one pair of UPDATEs per period for all of the process's sessions (a task per session
    cost two UPDATEs per session, about 5 % of the event loop at 200 learners; issue 14). A session
    joins once its row exists and leaves when it ends; the task runs while any session is in it and
    is cancelled and awaited when the last one leaves, so a process with no session runs none.
    """

    def __init__(self) -> None:
        self.sessions: set[int] = set()
        self.task: asyncio.Task | None = None

    def join(self, session_id: int) -> None:
        self.sessions.add(session_id)
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            self.task = loop.create_task(self._beat(), name="session-heartbeats")

    async def leave(self, session_id: int) -> None:
        self.sessions.discard(session_id)
        if not self.sessions and self.task is not None:
            task, self.task = self.task, None
            if task.get_loop() is asyncio.get_running_loop():
                await cancel_and_wait(task)

    async def _beat(self) -> None:
        claimer = services.process_id()
        while True:
            await clock.current().sleep(settings.PARLA_HEARTBEAT_SECONDS)  # the heartbeat period, not a settle wait
            if not self.sessions:
                continue
            try:
                await database_sync_to_async(services.heartbeat)(list(self.sessions), claimer)
            except DatabaseError as exc:  # a database blip must not end a session; the next beat retries
                logger.warning("heartbeat failed", extra={"sessions": len(self.sessions), "error": str(exc)})


heartbeats = Heartbeats()  # this process's


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
            await clock.current().sleep(self.interval)  # the sweep period, not a settle wait
