"""Which client event an `error` answers when it does not say (pure: no I/O).

DESIGN section 2 says an `error` names the `event_id` of the client event that caused it, and the
`openai` model has the field ("The event_id of the client event that caused the error, if applicable":
openai/types/realtime/realtime_error.py). But no public capture shows the API echoing it, and it is
optional: the simulator's knob `error_event_ids=False` sends errors without it (issue 25). Parla's
requests must not then wait for a confirmation that never comes, nor take an error meant for them as
someone else's.

The API handles a session's client events in order, so the error answers the oldest event still
unanswered of the kind the error is about. The kind comes from the error's code, else from the field its
`param` names, else from its message: each below beside the error it is in the simulator's catalogue
(tutor/realtime/simulator/errors.py, where each has its public source).
"""

from __future__ import annotations

from collections.abc import Iterable

# error code -> the client event types it can answer
BY_CODE: dict[str, tuple[str, ...]] = {
    "response_cancel_not_active": ("response.cancel",),
    "conversation_already_has_active_response": ("response.create",),
    "cannot_update_voice": ("session.update",),
    "cannot_update_speed": ("session.update",),
    "input_audio_buffer_commit_empty": ("input_audio_buffer.commit",),
    "item_truncate_invalid_item_id": ("conversation.item.truncate",),
    "unsupported_content_type": ("conversation.item.truncate",),
    "item_delete_invalid_item_id": ("conversation.item.delete",),
    "item_retrieve_invalid_item_id": ("conversation.item.retrieve",),
}
# the first segment of an error's `param` -> the client event types that carry that field
BY_PARAM: dict[str, tuple[str, ...]] = {
    "session": ("session.update",),
    "response": ("response.create",),
    "response_id": ("response.cancel",),
    "item": ("conversation.item.create",),
    "previous_item_id": ("conversation.item.create",),
    "content_index": ("conversation.item.truncate",),
    "audio_end_ms": ("conversation.item.truncate",),
}
# a message's opening words -> the client event types (errors.truncate_too_long has no param)
BY_MESSAGE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Audio content of", ("conversation.item.truncate",)),
    ("Cancellation failed", ("response.cancel",)),
)


def answered_types(code: str | None, param: str | None, message: str | None) -> tuple[str, ...]:
    """The client event types an error without `event_id` can be the answer to (empty: cannot tell)."""
    if code in BY_CODE:
        return BY_CODE[code]
    head = (param or "").split(".")[0].split("[")[0]
    if head in BY_PARAM:
        return BY_PARAM[head]
    for opening, types in BY_MESSAGE:
        if (message or "").startswith(opening):
            return types
    return ()


def attribute(types: Iterable[str], unanswered: Iterable[tuple[str, str]]) -> str | None:
    """The event_id of the oldest unanswered client event of one of `types`; `unanswered` is
    (event_id, type) in the order they were sent."""
    wanted = set(types)
    return next((event_id for event_id, kind in unanswered if kind in wanted), None)
