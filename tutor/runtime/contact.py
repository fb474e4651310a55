"""The runtime's side of first contact with the real API (issue 25), used by the session's parts:
FatalErrors and SilentReplies by TutorEvents (`error`, `response.done`), is_fatal_request_error by the
runtime's task guard, match_what_was_heard by the ResponseScheduler after a barge-in. (The fallbacks of a
refused session configuration are the TutorConnection's: tutor.realtime.fallback.SessionShape.)

- A fatal `error` mid-session (the key revoked, quota spent, model access withdrawn: failures.fatal_error)
  ends the session as a failed response of that kind does: the operator's log names the cause once, with
  the API's own text; the learner is told in Parla's words; placement ends with what is known, and the
  session's end closes every upstream session.
- A request that such an error answered (a `response.create` refused for quota) is not a second problem
  to report: the session task that made it stops quietly, the error event ends the session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from tutor.realtime import wire
from tutor.realtime.client import RealtimeClient, RealtimeRequestError
from tutor.realtime.failures import UpstreamFailure, fatal_error
from tutor.realtime.logs import BoundLogger
from tutor.realtime.relay import LearnerPort
from tutor.runtime.phase import SessionPhase

if TYPE_CHECKING:  # these parts import this module: for types only
    from tutor.runtime.connection import TutorConnection
    from tutor.runtime.responses import ResponseScheduler


def is_fatal_request_error(exc: BaseException) -> bool:
    return isinstance(exc, RealtimeRequestError) and fatal_error(exc.code, getattr(exc.error, "type", None)) is not None


class FatalErrors:
    """`error` events after which the session cannot go on (tutor.runtime.events' error handling)."""

    def __init__(
        self,
        *,
        phase: SessionPhase,
        give_up: Callable[[UpstreamFailure], Awaitable[None]],
        ended: Callable[[], Awaitable[None]],
        spawn: Callable[[Coroutine, str], asyncio.Task],
        log: BoundLogger,
    ):
        self.phase = phase
        self.give_up = give_up  # the placement ends with what is known, the learner told (SessionOutcome)
        self.ended = ended  # the session is over: its remaining tasks are cancelled
        self.spawn = spawn
        self.log = log
        self.logged = False  # the cause is logged once per session: the rest are its echoes

    def on_error(self, error: Any) -> bool:
        """End the session if `error` is fatal (True); False for an error the session lives on after.
        From the client's reader: the ending runs in a task of its own (the session's end closes the
        client and awaits its reader)."""
        failure = fatal_error(error.code, error.type)
        if failure is None:
            return False
        if not self.logged:
            self.logged = True
            self.log.warning(
                "upstream refused to go on",
                extra={"kind": failure.kind, "code": error.code, "error_type": error.type,
                       "error_message": error.message, "event_id": error.event_id},
            )
        self.spawn(self._end(failure), "fatal-error")
        return True

    async def _end(self, failure: UpstreamFailure) -> None:
        await self.give_up(failure)
        if self.phase.now.over:
            # Ended without a handover (not rated): its timers and watchers stop now, not at the disconnect
            # (with a handover, the delivery's end does this).
            await self.ended()


# A reply that completed without the audio it was asked for (issue 25, finding 5): asked again once; a
# second one in a row, and the learner is told (the session goes on: they can answer in writing).
SILENT_CODE = "tutor_silent"
SILENT_MESSAGE = (
    "The tutor's reply came without sound. You can answer in writing, or stop and try again in a minute."
)


class SilentReplies:
    """Completed replies of the tutor session that made no audio and no tool call."""

    def __init__(
        self,
        *,
        phase: SessionPhase,
        connection: TutorConnection,
        responses: ResponseScheduler,
        learner: LearnerPort,
        spawn: Callable[[Coroutine, str], asyncio.Task],
        log: BoundLogger,
    ):
        self.phase = phase
        self.connection = connection
        self.responses = responses
        self.learner = learner
        self.spawn = spawn
        self.log = log
        self.in_a_row = 0
        self.told = 0  # times the learner was told (tests, metrics)

    def on_response_done(self, response: Any) -> None:
        """From the client's reader, after the tracker saw the `response.done` (never awaits)."""
        if response.status != "completed" or not response.conversation_id or not self.phase.now.placing:
            return
        tracker = self.connection.tracker
        state = tracker.responses.get(response.id)
        items = [tracker.items[i] for i in (state.item_ids if state else ()) if i in tracker.items]
        if any(item.audio_bytes for item in items) or any(item.type == "function_call" for item in items):
            self.in_a_row = 0  # it spoke, or it made a call that a spoken reply follows
            return
        self.in_a_row += 1
        self.log.warning("reply completed without audio",
                         extra={"response_id": response.id, "in_a_row": self.in_a_row,
                                "items": [item.type for item in items]})
        if self.in_a_row == 1:
            self.responses.want("reply without audio")  # asked again, once
            return
        self.in_a_row = 0
        self.told += 1
        self.spawn(self.learner.send_event(wire.error(SILENT_CODE, SILENT_MESSAGE)), "tell-silent")


# --- after a barge-in: the model's context holds what the learner heard, nothing more -----------------
#
# The page plays the tutor's items one after the other; a flush drops all it has not played. The item
# playing is cut where the learner stopped hearing it (`conversation.item.truncate`); but a response of
# several items (the gpt-realtime-2 family's preamble, call and answer) has items generated and never
# played, which stay whole upstream: the model then believes the learner heard them and refers to a
# question they never heard (issue 25, finding 3). LiveKit deletes an item of which nothing was played
# (livekit/agents#6158) and has this bug open for the later items (livekit/agents#6424). Here both:
# an item cut at 0 ms is deleted rather than truncated, and every assistant message after the one
# playing, still in the conversation and of a response that has ended, is deleted
# (`conversation.item.delete` -> `conversation.item.deleted`). Function calls stay: their outputs refer
# to them, and the learner's answer they record was heard.


def unheard_items(tracker: Any, played_item_id: str | None, played_ms: int) -> list[str]:
    """Item ids to delete after a barge-in that stopped `played_item_id` at `played_ms` (pure)."""
    ids = list(tracker.items)
    if played_item_id not in ids:
        return []  # the page played nothing Parla knows of: nothing can be placed after it
    after = ids[ids.index(played_item_id) + 1:]
    candidates = ([played_item_id] if played_ms == 0 else []) + after
    unheard = []
    for item_id in candidates:
        item = tracker.items[item_id]
        response = tracker.responses.get(item.response_id)
        if (item.type == "message" and item.role == "assistant" and item_id in tracker.conversation_item_ids
                and (item.audio_bytes or item.transcript) and response is not None and not response.active):
            unheard.append(item_id)
    return unheard


async def match_what_was_heard(client: RealtimeClient | TutorConnection, item_id: str | None, played_ms: int, timeout: float,
                               log: Any) -> None:
    """Truncate the item the learner was hearing at `played_ms`, delete what they never heard."""
    unheard = unheard_items(client.tracker, item_id, played_ms)
    if item_id not in unheard:
        await client.truncate_played(item_id, played_ms, timeout)
    for unheard_id in unheard:
        try:
            await client.delete_item(unheard_id, timeout)
        except RealtimeRequestError as exc:  # e.g. already gone: the API's text to the log, nothing else
            log.warning("unheard item not deleted", extra={"item_id": unheard_id, "code": exc.code,
                                                           "error_message": exc.error.message})
    if unheard:
        log.info("unheard items deleted", extra={"item_ids": unheard, "played_item_id": item_id,
                                                 "audio_end_ms": played_ms})
