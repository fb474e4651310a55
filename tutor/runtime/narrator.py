"""Narrator: the summary voice's upstream session, its whole life in one place.

The tutor's voice is fixed once it has spoken, so the level and the feedback are spoken by a second
upstream session configured with the summary voice (DESIGN section 3, step 5). Its life:

    prepare   opened early, one answer before the placement can end (the runtime asks when
              `placement.one_answer_from_end()`), so the level is said one round trip after the ceiling
    take      the handover takes the opening task (the prepared one if it is, or will be, open; else
              one opened now) and owns it from then: it closes it when the summary is over
    discard   a prepared narrator no handover took (a session that ends not rated, or the learner
              leaves) is cancelled and closed with the session

Every task here is cancelled and awaited by whoever owns it at the end; no narrator session outlives
its learner.
"""

from __future__ import annotations

import asyncio
import logging

from tutor import persona
from tutor.realtime.client import RealtimeClient
from tutor.realtime.relay import LearnerPort, SpeechRelay, TranscriptCallback
from tutor.realtime.tasks import cancel_and_wait
from tutor.upstream import Upstream, relay_with_errors_logged

logger = logging.getLogger(__name__)


async def open_narrator(
    upstream: Upstream,
    voice: str,
    learner: LearnerPort,
    step_timeout: float,
    on_transcript: TranscriptCallback | None = None,
) -> tuple[RealtimeClient, SpeechRelay]:
    """A second upstream session that speaks in `voice`, relaying its speech to the learner.

    Ready when it returns: `session.updated` confirmed the narrator configuration and voice.
    """
    client = upstream.client("narrator")
    relay = SpeechRelay(learner, role="narrator", voice=lambda: client.tracker.voice, on_transcript=on_transcript)
    client.handler = relay_with_errors_logged(relay, "narrator")
    await client.open(persona.narrator_session_config(voice), step_timeout)
    logger.info("narrator ready", extra={"voice": client.tracker.voice, "session_id": client.tracker.session_id})
    return client, relay


async def close_narrator(task: asyncio.Task | None) -> None:
    """Cancel and await a narrator's opening task, and close the session it opened (if it did)."""
    if task is None:
        return
    await cancel_and_wait(task)
    if not task.cancelled() and task.exception() is None:
        await task.result()[0].close()


class Narrator:
    """One session's narrator: prepared early, taken by the handover, or discarded with the session."""

    def __init__(
        self,
        learner: LearnerPort,
        *,
        step_timeout: float,
        upstream: Upstream | None = None,
        on_transcript: TranscriptCallback | None = None,
    ):
        self.learner = learner
        self.step_timeout = step_timeout
        self.upstream = upstream  # set by the runtime once it is resolved (before anything is said)
        self.on_transcript = on_transcript
        self.early: asyncio.Task | None = None  # prepared, not yet taken
        self.opened: list[RealtimeClient] = []  # every narrator session opened (the benchmark counts them)

    async def open(self, voice: str) -> tuple[RealtimeClient, SpeechRelay]:
        client, relay = await open_narrator(self.upstream, voice, self.learner, self.step_timeout, self.on_transcript)
        self.opened.append(client)
        return client, relay

    def prepare(self, voice: str) -> None:
        """Start opening the narrator session in `voice` now, ahead of the handover (idempotent)."""
        if self.early is None:
            self.early = asyncio.create_task(self.open(voice), name="narrator-early")

    def take(self, voice: str) -> asyncio.Task:
        """The narrator's opening task, for the handover, which owns it from now on: the one prepared
        earlier if it is (or will be) open, else one started now."""
        task, self.early = self.early, None
        if task is not None and task.done() and (task.cancelled() or task.exception() or not task.result()[0].is_open):
            task = None  # it failed to open, or the connection went away while it waited: a new one
        return task or asyncio.create_task(self.open(voice), name="narrator-open")

    async def discard(self) -> None:
        """Close a narrator session prepared for a handover that did not happen (cancelled and awaited)."""
        task, self.early = self.early, None
        await close_narrator(task)
