"""A deploy without losing a learner: what a server process does between SIGTERM and its exit.

Both servers Parla runs under end every connection at once on SIGTERM. Uvicorn (tutor/serve.py)
sets `should_exit`, then sends every websocket a 1012 close and its application a
disconnect (uvicorn/server.py `handle_exit`, `shutdown`; websockets_sansio_impl.py `shutdown`);
Daphne (the image's CMD, and `manage.py runserver`) lets Twisted stop the reactor, and its "before shutdown" trigger
(`Server.kill_all_applications`) cancels every connection's application (daphne/server.py,
twisted/internet/base.py `sigTerm`). Either way every running placement ended in the same instant.
So the drain takes SIGTERM first: under Uvicorn `tutor.serve.Server.handle_exit` hands it over
(`Drain.take_sigterm`) and the drain ends with `should_exit`; under Daphne `Drain.start` replaces
Twisted's SIGTERM handler and the drain ends with `reactor.stop`. The drain:

1. At once (in the signal handler): the process turns not-ready (`/readyz` answers 503 "draining")
   and every new session is refused with close 4012 (RFC 6455's 1012 "Service Restart", which Daphne
   cannot send), which the page retries on a new connection: through the proxy, another process.
2. Learners who are connected but in no session are closed with 4012 as well: their next Start goes
   elsewhere.
3. Running placements go on for up to PARLA_DRAIN_SECONDS; those that end meanwhile deliver as usual.
4. At that deadline each placement still running is handed over to reconnection: its answer in
   progress judged and stored, its upstream session closed, the session detached
   (tutor.runtime.resumption), and its socket closed with 4012: the page reconnects through the proxy
   to another process and resumes the same placement there. Every handover in progress finishes
   delivering here (each of its steps is bounded), up to HANDOVER_SECONDS more. (With
   PARLA_RESUME_SECONDS=0 the placements end with what is known instead, `server_drain`, and their
   assessments are handed over like on Stop.)
5. Every learner socket still open is closed with 4012; closing ends its session runtime (the
   upstream sessions are closed, an undelivered assessment is kept and graded by the rules), and
   the drain waits for that, up to CLOSE_SECONDS.
6. Then the server is stopped: its own shutdown finds nothing left to close.

A second SIGTERM stops the server at once (the server's own handling), for an operator who means it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from typing import Callable, Protocol

from django.conf import settings

from tutor import metrics
from tutor.realtime.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

HANDOVER_SECONDS = 60.0  # after the drain deadline: handovers in progress finish (their steps are bounded)
CLOSE_SECONDS = 15.0  # after closing the sockets: their session runtimes end (upstream sessions closed)


class LearnerConnection(Protocol):
    """What the drain needs of a learner's connection (tutor.consumers.TutorConsumer)."""

    def in_session(self) -> bool: ...  # a session runs on it, not yet ended (a handover counts)

    async def end_for_drain(self) -> None: ...  # hand its placement over to reconnection (a handover finishes)

    async def close_for_drain(self) -> None: ...  # close the socket with 4012


class Drain:
    """This process's drain: the learners' connections it knows, whether it drains, its owned task."""

    def __init__(self) -> None:
        self.draining = False
        self.learners: set[LearnerConnection] = set()
        self.task: asyncio.Task | None = None
        self._changed = asyncio.Event()
        self._stop_server: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- the connections (called by the consumer) ------------------------------------------------------

    def join(self, learner: LearnerConnection) -> None:
        self.learners.add(learner)

    def leave(self, learner: LearnerConnection) -> None:
        self.learners.discard(learner)
        self.changed()

    def changed(self) -> None:
        """A session ended or a socket closed: the drain looks again at what still runs."""
        self._changed.set()

    # --- the service (tutor/serving.py) -------------------------------------------------------------------

    def start(self) -> None:
        """Inside the running server's loop. Under Daphne: take SIGTERM over from Twisted (installed
        when the reactor started). Only in the main thread (Python's rule for signal handlers):
        `runserver`'s autoreloader serves from another thread, and keeps Twisted's handling."""
        self._loop = asyncio.get_running_loop()
        if "twisted.internet.reactor" not in sys.modules or threading.current_thread() is not threading.main_thread():
            return
        from twisted.internet import reactor

        if not reactor.running:  # installed (daphne is an installed app) but not serving: not Daphne's process
            return
        self._stop_server = reactor.stop
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def serve_with(self, stop_server: Callable[[], None]) -> None:
        """A server that hands SIGTERM over (tutor/serve.py): how the drain stops it when done."""
        self._stop_server = stop_server

    async def stop(self) -> None:
        if self.task is not None and self.task is not asyncio.current_task():
            await cancel_and_wait(self.task)

    def take_sigterm(self) -> bool:
        """A SIGTERM, from the server's signal handler: whether the drain took it (False: a second
        SIGTERM, or no loop or server to drain: the server's own handling applies)."""
        if self.draining or self._loop is None or self._stop_server is None:
            return False
        # A Python signal handler runs in the main thread between two bytecodes, here the event
        # loop's: set the flag now (readiness reads it), schedule the rest on the loop.
        self.draining = True
        self._loop.call_soon_threadsafe(self.begin)
        return True

    def _on_sigterm(self, signum, frame) -> None:
        if not self.take_sigterm():
            logger.warning("second SIGTERM: stopping now")
            self._loop.call_soon_threadsafe(self._stop_server)

    def begin(self) -> None:
        self.draining = True
        metrics.DRAINING.set(1)
        self.task = asyncio.get_running_loop().create_task(self.run(), name="drain")

    async def run(self) -> None:
        """The drain, then the server's stop, whatever happened in between."""
        try:
            await self._drain()
        except Exception:  # logged; the process stops all the same (Daphne then cancels what is left)
            logger.exception("drain failed")
        finally:
            if self._stop_server is not None:
                self._stop_server()

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        logger.warning("drain started", extra={"sessions": self._running_count(), "connections": len(self.learners),
                                                "drain_seconds": settings.PARLA_DRAIN_SECONDS})
        await self._each([one for one in self.learners if not one.in_session()], "close_for_drain")
        finished = await self._until(lambda: not self._running_count(), started + settings.PARLA_DRAIN_SECONDS)
        if not finished:
            running = [one for one in self.learners if one.in_session()]
            logger.warning("drain deadline: placements handed over", extra={"sessions": len(running)})
            await self._each(running, "end_for_drain")
            await self._until(lambda: not self._running_count(), loop.time() + HANDOVER_SECONDS)
        await self._each(list(self.learners), "close_for_drain")
        await self._until(lambda: not self.learners, loop.time() + CLOSE_SECONDS)
        logger.warning("drain finished", extra={"seconds": round(loop.time() - started, 2),
                                                 "left_running": self._running_count(),
                                                 "left_connections": len(self.learners)})

    @staticmethod
    async def _each(learners: list[LearnerConnection], step: str) -> None:
        """`step` of every one of `learners`, side by side (a close to a browser that does not read
        waits up to its grace: one after another they would add up); one's failure (logged) does not
        keep the others from it."""
        results = await asyncio.gather(*(getattr(learner, step)() for learner in learners), return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                logger.error("drain step failed", extra={"step": step}, exc_info=result)

    def _running_count(self) -> int:
        return sum(1 for learner in self.learners if learner.in_session())

    async def _until(self, done: Callable[[], bool], deadline: float) -> bool:
        """Wait until `done()` (looked at whenever a session ends or a socket closes) or `deadline`."""
        loop = asyncio.get_running_loop()
        while not done():
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                return done()
        return True


current = Drain()  # this process's
