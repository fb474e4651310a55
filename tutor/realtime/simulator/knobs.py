"""Simulator knobs: one dataclass, defaults, and per-connection query-string overrides."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus

from assessments.cefr import LEVELS
from config.flags import parse_bool

from .persona import PROBE_SHAPES

# The real API accepts `input_audio_buffer.append` events of up to 15 MiB (observed limit,
# public capture notes "gpt-live-transcribe" spike: "15MiB is the per-append limit").
DEFAULT_MAX_MESSAGE_BYTES = 15 * 1024 * 1024

# The real API generates audio faster than real time: "The server will produce audio faster than
# realtime" (openai-python, openai/types/realtime/conversation_item_truncate_event.py, the docstring of
# ConversationItemTruncateEvent). The simulator does the same by default; pace=1 paces at real time.
DEFAULT_PACE = 4.0

# Knobs a client may not change from its own query string: they protect the simulator itself.
SERVER_ONLY_KNOBS = frozenset({"require_auth", "api_key"})

# How `fail_responses` makes responses end `failed` (errors.failed_response has each one's real shape).
FAILURE_KINDS = ("rate_limit", "quota", "model")
FAIL_AS = ("response", "error")
ERROR_STATUSES = frozenset(status.value for status in HTTPStatus if 400 <= status.value <= 599)


class KnobError(ValueError):
    """A knob value (from a query string or a command-line flag) is not valid."""


@dataclass(frozen=True)
class SimulatorKnobs:
    """Everything that changes how the simulator behaves; see docs/internal-contracts.md."""

    # audio generation rate, a multiple of real time: 4.0 = four times (the default, like the API),
    # 1.0 = real time, 0 = as fast as possible
    pace: float = DEFAULT_PACE
    latency_ms: float = 0.0  # one-way delay applied to every event, both directions
    jitter_ms: float = 0.0  # +/- uniform jitter on that delay (seeded, never reorders)
    seed: int = 0
    drop_after_events: int | None = None  # abort the TCP connection after N server events
    drop_after_seconds: float | None = None  # abort the TCP connection after this long
    session_max_seconds: float = 3600.0  # expiry: close 1001 naming this duration
    audio_ms_per_response: int | None = None  # fixed audio length per spoken response
    true_level: str | None = None  # simulated learner: probes at or below it are sustained
    # How a response to a learner answer is made up (persona.PROBE_SHAPES): "auto" follows the model
    # (preamble, record_probe call and answer in one response for the gpt-realtime-2 family).
    probe_shape: str = "auto"
    # A tutor model that errs, on every Nth learner answer (0 = never): no record_probe call at all,
    # or the call made twice; on every Nth spoken reply: the reply in the wrong language.
    skip_probe_every: int = 0
    repeat_probe_every: int = 0
    wrong_language_every: int = 0
    require_auth: bool = True
    api_key: str | None = None  # when set, the bearer token must equal it
    validate_output: bool = False  # validate each outgoing event against the openai models
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # Failed responses (response.done status `failed` with status_details.error): which kind, after
    # how many good responses of a connection, for how many (None: every one from then on).
    fail_responses: str | None = None  # one of FAILURE_KINDS
    fail_after_responses: int = 0
    fail_for_responses: int | None = None
    # How a failed response shows: "response" (response.done status failed, status_details.error) or
    # "error" (an `error` event with that error object instead of the response).
    fail_as: str = "response"
    rate_limit_reset_seconds: float = 1.0  # what rate_limits.updated says after a rate-limited response
    refuse_upgrade: int | None = None  # refuse the websocket upgrade with this HTTP status (401, 403, 429, 5xx)
    # A later API version: fields, enum values, an output item type and an event type the installed
    # `openai` package does not know, in every event (later.py says which).
    later_version: bool = False
    # `error` events without the `event_id` of the client event that caused it (no public capture shows
    # the API echoing it: issue 25): the client must tell what an error answers without it.
    error_event_ids: bool = True
    # Transcription models whose `session.update` is rejected as the API rejects a live transcription
    # model with turn detection on (errors.transcription_rejected), comma-separated; "*": every model.
    reject_transcription: str = ""
    # Responses of a connection (1-based numbers, comma-separated) that complete without the audio they
    # were asked for: their words come as text only (issue 25, finding 5: "the tutor is silent").
    silent_responses: str = ""

    def __post_init__(self) -> None:
        if self.pace < 0:
            raise KnobError("pace must be >= 0")
        if self.latency_ms < 0 or self.jitter_ms < 0:
            raise KnobError("latency_ms and jitter_ms must be >= 0")
        if self.session_max_seconds <= 0:
            raise KnobError("session_max_seconds must be > 0")
        if self.true_level is not None and self.true_level not in LEVELS:
            raise KnobError(f"true_level must be one of {', '.join(LEVELS)}")
        if self.audio_ms_per_response is not None and self.audio_ms_per_response <= 0:
            raise KnobError("audio_ms_per_response must be > 0")
        if self.probe_shape not in PROBE_SHAPES:
            raise KnobError(f"probe_shape must be one of {', '.join(PROBE_SHAPES)}")
        if min(self.skip_probe_every, self.repeat_probe_every, self.wrong_language_every) < 0:
            raise KnobError("skip_probe_every, repeat_probe_every and wrong_language_every must be >= 0")
        if self.max_message_bytes <= 0:
            raise KnobError("max_message_bytes must be > 0")
        if self.fail_responses is not None and self.fail_responses not in FAILURE_KINDS:
            raise KnobError(f"fail_responses must be one of {', '.join(FAILURE_KINDS)}")
        try:
            self.silent_numbers
        except ValueError:
            raise KnobError("silent_responses must be response numbers separated by commas, e.g. 1,3") from None
        if self.fail_as not in FAIL_AS:
            raise KnobError(f"fail_as must be one of {', '.join(FAIL_AS)}")
        if self.fail_after_responses < 0:
            raise KnobError("fail_after_responses must be >= 0")
        if self.fail_for_responses is not None and self.fail_for_responses < 1:
            raise KnobError("fail_for_responses must be >= 1")
        if self.rate_limit_reset_seconds < 0:
            raise KnobError("rate_limit_reset_seconds must be >= 0")
        if self.refuse_upgrade is not None and self.refuse_upgrade not in ERROR_STATUSES:
            raise KnobError("refuse_upgrade must be an HTTP error status (e.g. 401, 403, 429, 500, 503)")

    @property
    def silent_numbers(self) -> frozenset[int]:
        return frozenset(int(n) for n in self.silent_responses.split(",") if n.strip())

    def fails(self, number: int) -> str | None:
        """The failure kind of a connection's `number`-th response (1-based), or None if it succeeds."""
        if self.fail_responses is None or number <= self.fail_after_responses:
            return None
        if self.fail_for_responses is not None and number > self.fail_after_responses + self.fail_for_responses:
            return None
        return self.fail_responses

    def with_overrides(self, values: Mapping[str, str], *, allow_server_only: bool = False) -> SimulatorKnobs:
        """A copy with string `values` (query string, CLI) parsed onto the matching fields.

        Keys that are not knobs (e.g. `model`) are ignored. Raises KnobError on a bad value.
        """
        changes: dict[str, object] = {}
        for field in dataclasses.fields(self):
            if field.name not in values:
                continue
            if field.name in SERVER_ONLY_KNOBS and not allow_server_only:
                raise KnobError(f"{field.name} cannot be set per connection")
            changes[field.name] = _parse(field.name, values[field.name])
        return dataclasses.replace(self, **changes)  # __post_init__ validates the result

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))


def knob_base_type(name: str) -> tuple[type, bool]:
    """(int|float|str|bool, optional?) for knob `name`; used to build CLI flags."""
    hint = typing.get_type_hints(SimulatorKnobs)[name]
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        base = next(a for a in args if a is not type(None))
        return base, True
    return hint, False  # type: ignore[return-value]


_NONE = {"", "none", "null"}


def _parse(name: str, raw: str) -> object:
    base, optional = knob_base_type(name)
    text = raw.strip()
    if optional and text.lower() in _NONE:
        return None
    try:
        if base is bool:
            return parse_bool(text)
        if base is int:
            return int(text)
        if base is float:
            return float(text)
        return text
    except ValueError:
        raise KnobError(f"invalid value for {name}: {raw!r}") from None
