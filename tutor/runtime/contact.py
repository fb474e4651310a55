"""The runtime's side of first contact with the real API (issue 25): hooks the session calls, kept here
while tutor/runtime/session.py is being split (HELPERS.md).

- A fatal `error` mid-session (the key revoked, quota spent, model access withdrawn: failures.fatal_error)
  ends the session as a failed response of that kind does: the operator's log names the cause once, with
  the API's own text; the learner is told in Parla's words; placement ends with what is known, and the
  session's end closes every upstream session.
- A request that such an error answered (a `response.create` refused for quota) is not a second problem
  to report: the session task that made it stops quietly, the error event ends the session.
"""

from __future__ import annotations

from typing import Any

from tutor.realtime import wire
from tutor.realtime.client import RealtimeClient, RealtimeRequestError
from tutor.realtime.failures import fatal_error


def is_fatal_request_error(exc: BaseException) -> bool:
    return isinstance(exc, RealtimeRequestError) and fatal_error(exc.code, getattr(exc.error, "type", None)) is not None


async def fatal_upstream_error(runtime: Any, error: Any) -> bool:
    """End `runtime`'s session if `error` is fatal (True); False for an error the session lives on after."""
    failure = fatal_error(error.code, error.type)
    if failure is None:
        return False
    if not getattr(runtime, "_fatal_logged", False):  # once per session: the rest are its echoes
        runtime._fatal_logged = True
        runtime.log.warning(
            "upstream refused to go on",
            extra={"kind": failure.kind, "code": error.code, "error_type": error.type,
                   "error_message": error.message, "event_id": error.event_id},
        )
    # In a task of its own: this runs in the client's reader, which the session's end closes and awaits.
    runtime._spawn(_end_for(runtime, failure), "fatal-error")
    return True


async def _end_for(runtime: Any, failure: Any) -> None:
    await runtime._upstream_failed(failure)
    if runtime._ended:
        # Ended without a handover (not rated): its timers and watchers stop now, not at the disconnect
        # (with a handover, the delivery's end does this).
        await runtime.tasks.cancel_all()


# A reply that completed without the audio it was asked for (issue 25, finding 5): asked again once; a
# second one in a row, and the learner is told (the session goes on: they can answer in writing).
SILENT_CODE = "tutor_silent"
SILENT_MESSAGE = (
    "The tutor's reply came without sound. You can answer in writing, or stop and try again in a minute."
)


class SilentReplies:
    """Completed replies of the tutor session that made no audio and no tool call."""

    def __init__(self, runtime: Any):
        self.runtime = runtime
        self.in_a_row = 0
        self.told = 0  # times the learner was told (tests, metrics)

    def on_response_done(self, response: Any) -> None:
        """From the client's reader, after the tracker saw the `response.done` (never awaits)."""
        runtime = self.runtime
        if response.status != "completed" or not response.conversation_id or runtime.assessment_id is not None:
            return
        tracker = runtime.client.tracker
        state = tracker.responses.get(response.id)
        items = [tracker.items[i] for i in (state.item_ids if state else ()) if i in tracker.items]
        if any(item.audio_bytes for item in items) or any(item.type == "function_call" for item in items):
            self.in_a_row = 0  # it spoke, or it made a call that a spoken reply follows
            return
        self.in_a_row += 1
        runtime.log.warning("reply completed without audio",
                            extra={"response_id": response.id, "in_a_row": self.in_a_row,
                                   "items": [item.type for item in items]})
        if self.in_a_row == 1:
            runtime.responses.want("reply without audio")  # asked again, once
            return
        self.in_a_row = 0
        self.told += 1
        runtime._spawn(runtime.learner.send_event(_silent_error()), "tell-silent")


def _silent_error() -> dict:
    return wire.error(SILENT_CODE, SILENT_MESSAGE)


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


async def match_what_was_heard(client: RealtimeClient, item_id: str | None, played_ms: int, timeout: float,
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
