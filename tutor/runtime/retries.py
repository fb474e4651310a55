"""FailedResponses: responses that end `failed` (rate limit, quota, model access, server error).

The API reports them as `response.done` with status `failed` and `status_details.error`; the session
lives on, but nothing was said. A rate limit or a server error is retried with bounded backoff,
honouring the reset the error message or the `rate_limits.updated` that follows gives, while the learner
is told the tutor is busy. A failure that persists, and one that retrying cannot help (quota, model
access), is handed to `give_up`: the session ends placement with what is known.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from tutor.realtime import wire
from tutor.realtime.client import RealtimeError
from tutor.realtime.failures import RateLimits, RetryPolicy, UpstreamFailure, failed_response, reset_from_message
from tutor.realtime.logs import BoundLogger
from tutor.realtime.relay import LearnerPort
from tutor.runtime.phase import SessionPhase
from tutor.runtime.responses import ResponseScheduler

if TYPE_CHECKING:
    from tutor.runtime.connection import TutorConnection


class FailedResponses:
    def __init__(
        self,
        *,
        connection: TutorConnection,
        phase: SessionPhase,
        responses: ResponseScheduler,
        learner: LearnerPort,
        give_up: Callable[[UpstreamFailure], Awaitable[None]],
        spawn: Callable[[Coroutine, str], asyncio.Task],
        log: BoundLogger,
        policy: RetryPolicy = RetryPolicy(),
    ):
        self.connection = connection
        self.phase = phase  # retried only while the placement is open: the handover owns failures then
        self.responses = responses
        self.learner = learner
        self.give_up = give_up
        self.spawn = spawn
        self.log = log
        self.policy = policy
        self.rate_limits = RateLimits()
        self.attempts = 0  # failed responses in a row
        self.created = 0  # responses started on the tutor session (a retry is moot once one started)

    def on_response_created(self) -> None:
        self.created += 1

    async def on_response_done(self, event: Any) -> None:
        """Called from the client's reader task: never waits for a server event here."""
        response = event.response
        if response.status == "completed":
            self.attempts = 0
            return
        if response.status != "failed" or not self.phase.now.placing:
            return
        error = response.status_details.error if response.status_details else None
        code, kind, message = (error.code, error.type, error.message) if error else (None, None, None)
        failure = failed_response(code, kind)
        self.attempts += 1
        self.log.warning(
            "response failed",
            extra={"response_id": response.id, "code": code, "error_type": kind, "error_message": message,
                   "attempt": self.attempts},
        )
        if not failure.retry or self.policy.gives_up(self.attempts):
            self.spawn(self.give_up(failure), "give-up")
            return
        # Registered now, from the reader: the rate_limits.updated that follows a response.done
        # (the order captured from the API) cannot slip past before the retry task runs.
        limits = self.connection.current.expect("rate_limits.updated")
        self.spawn(self._retry(limits, reset_from_message(message), self.created), "retry")

    async def _retry(self, limits: asyncio.Future, asked: float | None, created: int) -> None:
        client = self.connection.current
        loop = asyncio.get_running_loop()
        failed_at = loop.time()
        try:
            update = await client.wait(limits, self.policy.base_delay)
            self.rate_limits.update(update.rate_limits, loop.time())
        except (TimeoutError, RealtimeError):
            pass  # no rate_limits.updated in time: the backoff and the error's own hint decide
        asked = max(asked or 0.0, self.rate_limits.wait(loop.time()))
        delay = self.policy.delay(self.attempts, asked)
        await self.learner.send_event(wire.busy(self.attempts, delay))
        self.log.info("response retry scheduled", extra={"attempt": self.attempts, "delay_s": round(delay, 3)})
        # Backoff the API asked for (a deliberate pause before the next request, not a settle wait).
        await asyncio.sleep(max(0.0, failed_at + delay - loop.time()))
        if self.created != created:
            return  # a response started meanwhile (the learner spoke): it answers instead
        await self.responses.create()
