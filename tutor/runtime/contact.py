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
from tutor.realtime.client import RealtimeRequestError
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
