"""Error factories with the real API's exact codes and messages, each next to its source.

Where no public source showed the real text, the factory says "simulator choice".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

INVALID_REQUEST = "invalid_request_error"

# Client event types a websocket session accepts, in the order the real API lists them.
# Source: public capture "WebSocket captures: Inworld TTS/STT and OpenAI Realtime (2026-09-18)",
# probe 8 (`{"type":"nope"}`). The capture's list also names the translation-only
# `session.close` and `session.input_audio_buffer.append`, which this simulator does not serve.
SUPPORTED_CLIENT_EVENTS = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.truncate",
    "conversation.item.delete",
    "conversation.item.retrieve",
    "response.create",
    "response.cancel",
)


@dataclass
class RealtimeAPIError(Exception):
    """A client mistake that becomes one `error` event; the session goes on."""

    message: str
    code: str | None
    param: str | None = None
    type: str = INVALID_REQUEST

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def as_error(self, client_event_id: str | None) -> dict[str, Any]:
        """The `error` object of an `error` server event."""
        return {
            "type": self.type,
            "code": self.code,
            "message": self.message,
            "param": self.param,
            "event_id": client_event_id,
        }

    def as_status_error(self) -> dict[str, Any]:
        """The `status_details.error` object of a failed response (type, code, message)."""
        return {"type": self.type, "code": self.code, "message": self.message}


def _quoted_list(values: list[str]) -> str:
    quoted = [f"'{v}'" for v in values]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


# --- Parsing the client's frame -------------------------------------------------------------

def invalid_json() -> RealtimeAPIError:
    # Source: capture probe 8 ("not json"): code invalid_json, message starts "Invalid event: failed
    # to parse JSON value." (rest elided there); the rest is the REST API's wording for a bad body.
    return RealtimeAPIError(
        "Invalid event: failed to parse JSON value. Please check the value to ensure it is valid "
        "JSON. (Common errors include trailing commas, missing closing brackets, missing quotation "
        "marks, etc.)",
        "invalid_json",
    )


def not_an_object() -> RealtimeAPIError:
    # Simulator choice: valid JSON that is not an object (e.g. `[1]`).
    return RealtimeAPIError("Invalid event: expected a JSON object.", "invalid_event")


def binary_frame() -> RealtimeAPIError:
    # Source: capture probe 8 (64 B BINARY frame): code invalid_event, the socket stays open.
    return RealtimeAPIError(
        "Expected a text WebSocket message; binary frames are not supported.", "invalid_event"
    )


def unknown_event_type(event_type: object) -> RealtimeAPIError:
    # Source: capture probe 8: code invalid_value, param "type", this message shape.
    return RealtimeAPIError(
        f"Invalid value: '{event_type}'. Supported values are: {_quoted_list(list(SUPPORTED_CLIENT_EVENTS))}.",
        "invalid_value",
        param="type",
    )


def missing_parameter(param: str) -> RealtimeAPIError:
    # Source: "Missing required parameter: 'item.type'." / "'item.call_id'" quoted in public client
    # notes about real API errors (find_string "Missing required parameter: 'item").
    return RealtimeAPIError(f"Missing required parameter: '{param}'.", "missing_required_parameter", param)


def unknown_parameter(param: str) -> RealtimeAPIError:
    # Source: capture probe 8 (`session.update {bogus_field: 1}`): code unknown_parameter.
    return RealtimeAPIError(f"Unknown parameter: '{param}'.", "unknown_parameter", param)


def invalid_value(param: str, value: object, supported: list[str]) -> RealtimeAPIError:
    # Source: capture of the transcription spike ("Invalid value: 'bogus'. Supported values are:
    # 'minimal', 'low', 'medium', 'high', and 'xhigh'." param session.audio.input.transcription.delay).
    return RealtimeAPIError(
        f"Invalid value: '{value}'. Supported values are: {_quoted_list(supported)}.", "invalid_value", param
    )


def invalid_type(param: str, expected: str, got: str) -> RealtimeAPIError:
    # Source: "Invalid type for 'item.content': expected an array of objects" (public notes on real
    # API errors); the ", but got ... instead." tail follows the REST API's wording.
    return RealtimeAPIError(
        f"Invalid type for '{param}': expected {expected}, but got {got} instead.", "invalid_type", param
    )


def invalid_parameter_value(param: str, detail: str) -> RealtimeAPIError:
    # Simulator choice: range and format errors the sources did not show.
    return RealtimeAPIError(f"Invalid value for '{param}': {detail}.", "invalid_value", param)


# --- Protocol rules -------------------------------------------------------------------------

def cancel_not_active() -> RealtimeAPIError:
    # Source: DESIGN section 2 (OpenAI API reference) and public client code matching on it.
    return RealtimeAPIError("Cancellation failed: no active response found", "response_cancel_not_active")


def response_already_active(response_id: str) -> RealtimeAPIError:
    # Source: DESIGN section 2 (OpenAI API reference).
    return RealtimeAPIError(
        f"Conversation already has an active response in progress: {response_id}. "
        "Wait until the response is finished before creating a new one.",
        "conversation_already_has_active_response",
    )


def cannot_update_voice() -> RealtimeAPIError:
    # Source: DESIGN section 2; same text in public fakes of the real API (find_string
    # "cannot_update_voice"). The whole session.update is rejected.
    return RealtimeAPIError(
        "Cannot update a conversation's voice if assistant audio is present.", "cannot_update_voice"
    )


def cannot_update_speed() -> RealtimeAPIError:
    # The API documents `audio.output.speed` as "can only be changed in between model turns, not while a
    # response is in progress" (openai/types/realtime/realtime_audio_config_output.py), but not what it
    # does when a client tries: no public capture or thread shows it. Simulator choice, the
    # conservative shape: the whole session.update is refused, like a voice change (code and message
    # made up in the same style).
    return RealtimeAPIError(
        "Cannot update a conversation's output speed while a response is in progress.", "cannot_update_speed"
    )


def commit_empty(buffered_ms: float) -> RealtimeAPIError:
    # Source: public spike notes against the real API (error.event_id is the commit's event_id):
    # "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio,
    # but buffer only has 0.00ms of audio." code input_audio_buffer_commit_empty.
    return RealtimeAPIError(
        "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
        f"but buffer only has {buffered_ms:.2f}ms of audio.",
        "input_audio_buffer_commit_empty",
    )


def truncate_unknown_item(item_id: str) -> RealtimeAPIError:
    # Source: public clients matching real errors: code item_truncate_invalid_item_id,
    # "Item with item_id not found: <id>" (also the seed's log: "...not found: dummy").
    return RealtimeAPIError(f"Item with item_id not found: {item_id}", "item_truncate_invalid_item_id")


def truncate_not_audio() -> RealtimeAPIError:
    # Source: livekit/agents#1016 (message) and livekit/agents PR #6158 (code unsupported_content_type).
    return RealtimeAPIError("Only model output audio messages can be truncated", "unsupported_content_type")


def truncate_bad_content_index(content_index: int) -> RealtimeAPIError:
    # Simulator choice: assistant audio items have one content part, index 0.
    return RealtimeAPIError(
        f"Invalid value: {content_index}. Only content_index 0 can be truncated for this item.",
        "invalid_value",
        param="content_index",
    )


def truncate_too_long(audio_ms: int, audio_end_ms: int) -> RealtimeAPIError:
    # Source: twilio-samples/speech-assistant-openai-realtime-api-python#45 ("Audio content of 9250ms
    # is already shorter than 57340ms"); code invalid_value per public clients matching it.
    return RealtimeAPIError(
        f"Audio content of {audio_ms}ms is already shorter than {audio_end_ms}ms", "invalid_value"
    )


def delete_unknown_item(item_id: str) -> RealtimeAPIError:
    # Source: speaches-ai/speaches tests/realtime (asserting the real API's error, param None).
    return RealtimeAPIError(
        f"Error deleting item: the item with id '{item_id}' does not exist.", "item_delete_invalid_item_id"
    )


def retrieve_unknown_item(item_id: str) -> RealtimeAPIError:
    # Source: speaches-ai/speaches tests/realtime, as above.
    return RealtimeAPIError(
        f"Error retrieving item: the item with id '{item_id}' does not exist.", "item_retrieve_invalid_item_id"
    )


def previous_item_not_found(item_id: str) -> RealtimeAPIError:
    # Simulator choice: the sources did not show this text.
    return RealtimeAPIError(
        f"Previous item with id '{item_id}' does not exist.", "invalid_value", param="previous_item_id"
    )


def duplicate_item_id(item_id: str) -> RealtimeAPIError:
    # Simulator choice: the sources did not show this text.
    return RealtimeAPIError(f"Item with id '{item_id}' already exists.", "invalid_value", param="item.id")


def transcription_session_unsupported() -> RealtimeAPIError:
    # Simulator choice: this simulator serves realtime (conversation) sessions only.
    return invalid_value("session.type", "transcription", ["realtime"])


def transcription_rejected() -> RealtimeAPIError:
    # Source of the text: OpenWhispr/openwhispr#2077 ("gpt-live-transcribe rejects every turn_detection
    # config (\"Turn detection is not supported for this transcription model\")"). The code and param are
    # a simulator choice (the PR quotes only the message); the param names the transcription object, as
    # the API's invalid_value errors name the field they refuse.
    return RealtimeAPIError(
        "Turn detection is not supported for this transcription model.",
        "invalid_value",
        param="session.audio.input.transcription.model",
    )


def missing_model() -> RealtimeAPIError:
    # Source: capture probe 11b (no model parameter): code missing_model, then close 4000.
    return RealtimeAPIError(
        "You must provide a model parameter, for example "
        "wss://api.openai.com/v1/realtime?model=gpt-realtime-1.5",
        "missing_model",
    )


def session_expired(max_seconds: float) -> RealtimeAPIError:
    # Source: twilio-samples/speech-assistant-openai-realtime-api-python#10 (error event, code
    # session_expired) and pollen-robotics/reachy_mini_conversation_app#134 (close 1001, same text).
    return RealtimeAPIError(
        f"Your session hit the maximum duration of {format_duration(max_seconds)}.", "session_expired"
    )


def format_duration(seconds: float) -> str:
    """'60 minutes' for 3600, '1 minute' for 60, '2.5 seconds' otherwise."""
    if seconds >= 60 and float(seconds) % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"


# --- Pydantic validation errors -> one RealtimeAPIError ------------------------------------

_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "nullable", "union"})
_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a decimal",
    "float_parsing": "a decimal",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}
_LITERAL_ERRORS = frozenset({"literal_error", "enum"})
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")


def _is_union_tag(segment: object) -> bool:
    """Pydantic puts union member names (class names, 'str', "literal['a']") into error locs."""
    return isinstance(segment, str) and (segment in _TYPE_TAGS or "[" in segment or segment[:1].isupper())


def _param(loc: tuple) -> str:
    out = ""
    for segment in loc:
        if _is_union_tag(segment):
            continue
        if isinstance(segment, int):
            out += f"[{segment}]"
        else:
            out += ("." if out else "") + str(segment)
    return out


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def from_validation_error(exc: ValidationError, model_name: str) -> RealtimeAPIError:
    """The one error to report for a client event that failed its official model.

    `exc` comes from the RealtimeClientEvent union; only errors of `model_name` (the member
    matching the event's `type`) count. Nested unions (conversation items, voices) are reduced
    to the branch whose discriminators (`type`, `role`) matched.
    """
    errors = [e for e in exc.errors() if e["loc"][:1] == (model_name,)]
    for e in errors:
        e["loc"] = e["loc"][1:]
    wrong: set[tuple] = set()
    for e in errors:
        loc = e["loc"]
        if e["type"] in _LITERAL_ERRORS and loc and loc[-1] in ("type", "role"):
            tags = [i for i, seg in enumerate(loc) if _is_union_tag(seg)]
            if tags:
                wrong.add(loc[: tags[-1] + 1])
    kept = [e for e in errors if not any(e["loc"][: len(w)] == w for w in wrong)]
    if kept:
        rank = {"missing": 0}
        best = min(kept, key=lambda e: rank.get(e["type"], 1 if e["type"] in _LITERAL_ERRORS else 2))
        return _convert(best, errors)
    return _discriminator_error(errors)


def _supported_values(errors: list[dict], param: str) -> list[str]:
    values: list[str] = []
    for e in errors:
        if e["type"] in _LITERAL_ERRORS and _param(e["loc"]) == param:
            for v in _QUOTED.findall(str((e.get("ctx") or {}).get("expected", ""))):
                if v not in values:
                    values.append(v)
    return values


def _discriminator_error(errors: list[dict]) -> RealtimeAPIError:
    # Every union branch failed on `type` or `role`: report the path whose value none accepts.
    for e in errors:
        if e["type"] in _LITERAL_ERRORS:
            param = _param(e["loc"])
            supported = _supported_values(errors, param)
            if e["input"] not in supported:
                return invalid_value(param, e["input"], supported)
    return _convert(errors[0], errors)


def _convert(error: dict, all_errors: list[dict]) -> RealtimeAPIError:
    param = _param(error["loc"])
    kind = error["type"]
    if kind == "missing":
        return missing_parameter(param)
    if kind in _LITERAL_ERRORS:
        return invalid_value(param, error["input"], _supported_values(all_errors, param))
    if kind in _EXPECTED:
        return invalid_type(param, _EXPECTED[kind], _json_kind(error["input"]))
    return invalid_parameter_value(param, error["msg"])


def find_unknown_parameter(model: BaseModel, prefix: str = "") -> str | None:
    """Dotted path of the first field the official model does not know (openai models keep extras)."""
    for key in model.model_extra or {}:
        return f"{prefix}{key}"
    for name in type(model).model_fields:
        found = _unknown_in(getattr(model, name), f"{prefix}{name}")
        if found:
            return found
    return None


def _unknown_in(value: object, path: str) -> str | None:
    if isinstance(value, BaseModel):
        return find_unknown_parameter(value, path + ".")
    if isinstance(value, list):
        for i, element in enumerate(value):
            found = _unknown_in(element, f"{path}[{i}]")
            if found:
                return found
    return None


# --- Failed responses (response.done status `failed`, status_details.error) --------------------------

RATE_LIMIT_CODE = "inference_rate_limit_exceeded"


def failed_response(kind: str, model: str) -> RealtimeAPIError:
    """The `status_details.error` of a response that ended `failed` (knobs.FAILURE_KINDS).

    The session lives on; nothing was said. `as_status_error()` gives the object's fields.
    """
    if kind == "rate_limit":
        # Source: openai/openai-python#2502 (a captured response.done, status failed, output [],
        # usage all zero; status_details.type "failed"): this type, code and message.
        return RealtimeAPIError(
            "We're currently processing too many requests \u2014 please try again later.",
            RATE_LIMIT_CODE,
        )
    if kind == "quota":
        # Source: jamesrochabrun/SwiftOpenAI PR #181 (realtime response.done failed with
        # status_details.error.code insufficient_quota); type and full message as the REST API's 429
        # body (ChatGPTNextWeb/NextChat#3664).
        return RealtimeAPIError(
            "You exceeded your current quota, please check your plan and billing details. For more "
            "information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
            "insufficient_quota",
            type="insufficient_quota",
        )
    if kind == "model":
        # Source: openai/openai-realtime-console#561 (a GA response.done, status failed, type
        # invalid_request_error, code model_not_found, this message).
        return RealtimeAPIError(f"The model `{model}` does not exist or you do not have access to it.", "model_not_found")
    raise ValueError(f"unknown failure kind {kind!r}")


# --- Refusals at connect ------------------------------------------------------------------------------

def invalid_api_key(masked_key: str) -> RealtimeAPIError:
    # Source: the API's "Incorrect API key provided" text (public REST bodies); on Realtime it comes
    # after the upgrade as an `error` event, then close 3000 "invalid_request_error.invalid_api_key"
    # (twilio-samples/speech-assistant-openai-realtime-api-python#4: "received 3000 (registered)
    # invalid_request_error.invalid_api_key"; openai/openai-realtime-api-beta#2: a random key
    # upgrades and gets an error message, a real key without access gets HTTP 403).
    return RealtimeAPIError(
        f"Incorrect API key provided: {masked_key}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_api_key",
    )


def upgrade_refusal(status: int) -> RealtimeAPIError:
    """The JSON error body of an HTTP refusal at the websocket upgrade (knobs.refuse_upgrade)."""
    if status == 401:
        # Source: as invalid_api_key above (the REST API's 401 body).
        return RealtimeAPIError(
            "Incorrect API key provided: sk-***. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_api_key",
        )
    if status == 403:
        # Source: the REST API's 403 body for an unsupported region (type request_forbidden). A key
        # without Realtime access also gets 403 at the upgrade (openai/openai-realtime-api-beta#2).
        return RealtimeAPIError(
            "Country, region, or territory not supported", "unsupported_country_region_territory",
            type="request_forbidden",
        )
    if status == 429:
        # Simulator choice of wording; code and type as the REST API's rate-limit 429.
        return RealtimeAPIError(
            "Rate limit reached for requests. Please try again in 20s.", "rate_limit_exceeded", type="requests"
        )
    if status >= 500:
        # Source: pipecat-ai/pipecat#1652 (the API's server_error text).
        return RealtimeAPIError(
            "The server had an error while processing your request. Sorry about that!", None, type="server_error"
        )
    return RealtimeAPIError("The request was refused.", None)  # simulator choice
