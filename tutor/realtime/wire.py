"""The browser wire protocol of `/ws/tutor/`: what the browser sends, validated, and every event the
server sends, built here and nowhere else.

Binary frames are learner microphone audio (the format of tutor.realtime.audio); text frames are JSON
control messages. Anything else gets a `ClientError` with a stable code; the connection stays open and
nothing of the session is lost. The README's "Browser wire protocol" section documents the same schema;
static/tutor/protocol.js is its JavaScript side (close codes, audio format).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from assessments.cefr import LEVELS
from assessments.text import storable_text
from tutor.realtime.playback import REPORT_KINDS

# Close codes of /ws/tutor/ and /ws/teacher/live/, sent after the handshake so the browser sees them.
CLOSE_NOT_AUTHENTICATED = 4401  # anonymous: log in first
CLOSE_FORBIDDEN = 4403  # logged in, but not allowed here (no Learner profile; not a teacher)
CLOSE_SUPERSEDED = 4409  # the same learner opened the tutor in another window
CLOSE_TOO_MANY = 4429  # the browser sent far more (or far more bad) messages than the page ever does
CLOSE_NOT_READING = 4008  # the browser read nothing of what it was sent for too long (tutor.backpressure)
# Daphne (autobahn's sendClose) sends only 1000 or a code from 3000-4999: "invalid close code (must be
# 1000 or from [3000, 4999])"; RFC 6455's 1011 and 1013 never reach the browser from an application.
# So the server's own conditions take their RFC code's meaning in the private range.
CLOSE_TRY_AGAIN_LATER = 4503  # like HTTP 503 / RFC 6455 1013: this server process runs all the sessions it may
CLOSE_SERVER_ERROR = 4500  # like HTTP 500 / RFC 6455 1011: a server bug; the session was ended cleanly first
CLOSE_SERVICE_RESTART = 4012  # like RFC 6455 1012 "Service Restart": this process drains (tutor/drain.py); reconnect
# Closed by Daphne itself (autobahn), not by Parla: a frame or message over MAX_FRAME_BYTES, with RFC 6455's
# "Message Too Big" (tutor.backpressure makes autobahn send the close frame instead of dropping the TCP).
CLOSE_MESSAGE_TOO_BIG = 1009
MAX_FRAME_BYTES = 1024 * 1024  # Daphne's websocket_max_message_size and _frame_size defaults
# A browser that does not read may never receive its close frame: the connection is dropped this long
# after the close was sent (autobahn's close handshake timeout), whatever the browser does.
NOT_READING_CLOSE_GRACE_SECONDS = 5.0

# Bounded work per connection. The page sends 10 audio frames and a few control messages a second;
# the limits leave room for clients that replay recorded answers faster than real time (the tests do).
AUDIO_FRAMES_PER_SECOND, AUDIO_FRAMES_BURST = 100.0, 300
CONTROL_PER_SECOND, CONTROL_BURST = 20.0, 60
ANSWERS_PER_SECOND, ANSWERS_BURST = 2.0, 10  # written answers: typed, not pasted by the thousand
MAX_REFUSED = 50  # refused messages (bad or over the rate) before the connection is closed with 4429
MAX_JSON_DEPTH = 8  # control messages are flat objects
SELF_ASSESSMENTS = LEVELS  # the warm-up's answers, besides "" (not sure)


class State(StrEnum):
    """What the session is doing, as the browser and the teachers' live view see it."""

    READY = "ready"
    CONNECTING = "connecting"
    LISTENING = "listening"
    TUTOR_SPEAKING = "tutor_speaking"
    ASSESSING = "assessing"
    SUMMARY = "summary"
    ENDED = "ended"


class ClientError(Exception):
    """A problem with what the browser sent; the consumer turns it into one `error` event."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def as_event(self) -> dict:
        return error(self.code, self.message)

MAX_AUDIO_FRAME_BYTES = 32 * 1024  # ~680 ms of audio; the page sends 100 ms frames
MAX_CONTROL_BYTES = 8 * 1024
MAX_TEXT_ANSWER_CHARS = 2000
MAX_ID_CHARS = 64
# No item plays longer than the upstream session that made it (60 minutes, DESIGN section 2): a played
# position past this is not a position. One within it but past what was sent is taken as the item's
# length (tutor.realtime.playback).
MAX_PLAYED_MS = 60 * 60 * 1000

# message type -> {field: (python type, required)}
CONTROL_MESSAGES: dict[str, dict[str, tuple[type, bool]]] = {
    "session.start": {"self_assessment": (str, False)},
    # The placement of `session_id` (the page got it in the `session` event) continues on this new connection.
    "session.resume": {"session_id": (int, True)},
    "session.stop": {},
    "answer.text": {"text": (str, True)},
    # kind: start | progress | end of playing the item (REPORT_KINDS); a report without one is progress
    "playback.report": {"item_id": (str, True), "played_ms": (int, True), "kind": (str, False)},
    "playback.flushed": {"request_id": (str, True), "item_id": (str, False), "played_ms": (int, True)},
}


def parse_audio(frame: bytes) -> bytes:
    if len(frame) > MAX_AUDIO_FRAME_BYTES:
        raise ClientError(
            "frame_too_large", f"Audio frames may be at most {MAX_AUDIO_FRAME_BYTES} bytes; got {len(frame)}."
        )
    if len(frame) % 2:
        raise ClientError("bad_audio", "Audio frames must be PCM16: an even number of bytes.")
    return frame


def parse_control(text: str) -> dict:
    """A validated control message (a dict with `type` and its fields only)."""
    if len(text.encode()) > MAX_CONTROL_BYTES:
        raise ClientError("frame_too_large", f"Control messages may be at most {MAX_CONTROL_BYTES} bytes.")
    if _depth(text) > MAX_JSON_DEPTH:
        raise ClientError("malformed", f"Control messages may nest at most {MAX_JSON_DEPTH} levels deep.")
    try:
        message = json.loads(text)
    except ValueError:
        raise ClientError("malformed", "Control messages must be JSON objects.") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ClientError("malformed", "Control messages must be JSON objects with a string 'type'.")
    kind = message["type"]
    fields = CONTROL_MESSAGES.get(kind)
    if fields is None:
        raise ClientError("unknown_type", f"Unknown message type {kind[:40]!r}; expected one of {', '.join(CONTROL_MESSAGES)}.")
    clean = {"type": kind}
    for name, (expected, required) in fields.items():
        if name not in message or message[name] is None:
            if required:
                raise ClientError("missing_field", f"{kind} needs the field {name!r}.")
            continue
        value = message[name]
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ClientError("bad_field", f"{kind}.{name} must be a {expected.__name__}.")
        clean[name] = _check(kind, name, value)
    return clean


def _depth(text: str) -> int:
    """How deep the brackets of a JSON text nest (strings skipped), before json.loads recurses into them."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def storable(text: str) -> bool:
    """Whether `text` can be stored as it was sent (assessments.text.storable_text changes nothing)."""
    return storable_text(text) == text


def _check(kind: str, name: str, value):
    if isinstance(value, str) and not storable(value):
        raise ClientError("bad_field", f"{kind}.{name} contains a NUL character or an unpaired surrogate.")
    if name == "text":
        value = value.strip()
        if not value:
            raise ClientError("bad_field", "answer.text needs some text.")
        if len(value) > MAX_TEXT_ANSWER_CHARS:
            raise ClientError("bad_field", f"Written answers may be at most {MAX_TEXT_ANSWER_CHARS} characters.")
    elif name == "self_assessment":
        # The warm-up's answer: a CEFR level, or "" for not sure (assessments.placement.starting_level).
        if value not in ("", *SELF_ASSESSMENTS):
            raise ClientError("bad_field", f"session.start.self_assessment must be one of {', '.join(SELF_ASSESSMENTS)} or ''.")
    elif name == "session_id" and not 0 < value < 2**63:
        raise ClientError("bad_field", "session.resume.session_id must be a session's id.")
    elif name == "kind" and value not in REPORT_KINDS:
        raise ClientError("bad_field", f"{kind}.kind must be one of {', '.join(REPORT_KINDS)}.")
    elif name == "played_ms" and not 0 <= value <= MAX_PLAYED_MS:
        raise ClientError("bad_field", f"{kind}.played_ms must be from 0 to {MAX_PLAYED_MS}.")
    elif isinstance(value, str) and len(value) > MAX_ID_CHARS:
        raise ClientError("bad_field", f"{kind}.{name} may be at most {MAX_ID_CHARS} characters.")
    return value


class RateLimit:
    """A token bucket: `allow()` is False once more than `burst` messages came faster than `per_second`."""

    def __init__(self, per_second: float, burst: int, clock):
        self.per_second = per_second
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.at = clock()

    def allow(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_second)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


# --- server -> browser events (README "JSON from the server") --------------------------------------


def state(value: State, **extra: Any) -> dict:
    """`state`; `ready` also carries `demo`, `language` and `running_elsewhere`."""
    return {"type": "state", "state": State(value).value, **extra}


def session(session_id: int, resumed: bool = False) -> dict:
    """The session's id, once its row exists: the page resumes it by this id after its connection
    dropped (`resumed`: this connection continues it; the conversation so far follows)."""
    return {"type": "session", "session_id": session_id, "resumed": resumed}


def audio_start(item_id: str, voice: str | None, role: str) -> dict:
    return {"type": "audio.start", "item_id": item_id, "voice": voice, "role": role}


def audio_end(item_id: str) -> dict:
    return {"type": "audio.end", "item_id": item_id}


def transcript(role: str, item_id: str, text: str, final: bool, *, mode: str = "", spoken_ms: int | None = None) -> dict:
    """Live text: a delta while `final` is False, the whole utterance when it is True.

    A learner's answer also says how it was given (`mode`: spoken | written); a spoken answer whose
    words are not known has empty `text` and its length in `spoken_ms` (the page says "spoken answer").
    """
    event = {"type": "transcript", "role": role, "item_id": item_id, "text": text, "final": final}
    if mode:
        event["mode"] = mode
    if spoken_ms is not None:
        event["spoken_ms"] = spoken_ms
    return event


def level(current: str, ladder: dict[str, str]) -> dict:
    return {"type": "level", "level": current, "ladder": ladder}


def playback_flush(request_id: str) -> dict:
    return {"type": "playback.flush", "request_id": request_id}


def assessing(progress: float, elapsed_ms: int) -> dict:
    return {"type": "assessing", "progress": round(progress, 3), "elapsed_ms": elapsed_ms}


def assessment(
    assessment_id: int, level: str, criteria: dict, summary: str, grader: str, status: str, partial: bool
) -> dict:
    return {
        "type": "assessment",
        "id": assessment_id,
        "level": level,
        "criteria": criteria,
        "summary": summary,
        "grader": grader,
        "status": status,
        "partial": partial,
    }


def busy(attempt: int, retry_in: float) -> dict:
    """The upstream is rate limited (or had an error): the tutor tries again in `retry_in` seconds."""
    seconds = max(1, round(retry_in))
    return {
        "type": "busy",
        "attempt": attempt,
        "retry_in_ms": round(retry_in * 1000),
        "message": f"The tutor is busy; trying again in {seconds} s.",
    }


def error(code: str, message: str) -> dict:
    return {"type": "error", "code": code, "message": message}
