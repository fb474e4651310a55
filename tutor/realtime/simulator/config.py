"""The session configuration: the defaults a new session reports and how `session.update` merges.

The configuration is kept as the API reports it (plain data, echoed in `session.created` and
`session.updated`); client models are turned into that shape with `plain()`.
"""

from __future__ import annotations

import copy
from typing import Any

from openai.types.realtime import RealtimeSessionCreateRequest
from pydantic import BaseModel

from config.openai_models import takes_reasoning
from tutor.realtime.audio import API_FORMAT

DEFAULT_INSTRUCTIONS = "You are a helpful, friendly assistant. Keep your answers short."
DEFAULT_VOICE = "alloy"

# Defaults the real API reports in session.created/updated for a turn detection object
# (openai-python realtime_audio_input_turn_detection.py docstrings: threshold 0.5,
# prefix_padding_ms 300, silence_duration_ms 500; create/interrupt default to true).
SERVER_VAD_DEFAULTS: dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}
SEMANTIC_VAD_DEFAULTS: dict[str, Any] = {
    "type": "semantic_vad",
    "eagerness": "auto",
    "create_response": True,
    "interrupt_response": True,
}
# Reported when a transcription object names no model (what the real API reports then is not
# documented; Parla always names its own model, so this only shapes the echo). The current live
# transcription model: "Transcribe live audio into streaming text: gpt-live-transcribe"
# (developers.openai.com/api/docs/guides/realtime); the older ones have an announced shutdown
# (openai/types/realtime/audio_transcription.py, config/openai_models.py).
TRANSCRIPTION_DEFAULTS: dict[str, Any] = {"model": "gpt-live-transcribe", "language": None, "prompt": None}
# What a reasoning model reports before any `session.update` names an effort: "Low effort is the
# default" (vercel.com/ai-gateway/models/gpt-realtime-2/about). Other models report no `reasoning`.
REASONING_DEFAULTS: dict[str, Any] = {"effort": "low"}


def plain(value: object) -> Any:
    """A client model (or a list of them) as the JSON-shaped data the client sent."""
    if isinstance(value, BaseModel):
        return value.to_dict()  # type: ignore[attr-defined]  # openai's models: set fields, API names
    if isinstance(value, list):
        return [plain(entry) for entry in value]
    return value


def requested_voice(audio: BaseModel | None) -> object:
    """The voice an `audio` setting (of a session or a response) asks for; None if it names none."""
    output = getattr(audio, "output", None)
    return plain(getattr(output, "voice", None))


def requested_speed(audio: BaseModel | None) -> float | None:
    """The output speed a session's `audio` setting asks for; None if it names none."""
    return getattr(getattr(audio, "output", None), "speed", None)


class SessionConfig:
    """The effective session configuration, shared by the parts of one session and merged in place."""

    def __init__(self, *, session_id: str, model: str, expires_at: int) -> None:
        self.data: dict[str, Any] = {
            "type": "realtime",
            "object": "realtime.session",
            "id": session_id,
            "model": model,
            "output_modalities": ["audio"],
            "instructions": DEFAULT_INSTRUCTIONS,
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": None,
            "truncation": "auto",
            "prompt": None,
            "expires_at": expires_at,
            "include": None,
            "audio": {
                "input": {
                    "format": dict(API_FORMAT),
                    "transcription": None,
                    "noise_reduction": None,
                    "turn_detection": dict(SERVER_VAD_DEFAULTS),
                },
                "output": {"format": dict(API_FORMAT), "voice": DEFAULT_VOICE, "speed": 1.0},
            },
        }
        if takes_reasoning(model):
            self.data["reasoning"] = dict(REASONING_DEFAULTS)

    def to_api(self) -> dict[str, Any]:
        """A copy for `session.created` / `session.updated`."""
        return copy.deepcopy(self.data)

    def update(self, update: RealtimeSessionCreateRequest) -> None:
        """Apply a `session.update`: only fields present change; nested objects of `audio` merge key
        by key; turn detection and transcription objects get their defaults."""
        merged = copy.deepcopy(self.data)
        for key, value in plain(update).items():
            if key == "type":
                continue
            if key != "audio":
                merged[key] = value
                continue
            for side, settings in (value or {}).items():
                target = merged["audio"].setdefault(side, {})
                for name, setting in (settings or {}).items():
                    target[name] = _with_defaults(name, setting)
        self.data = merged

    @property
    def model(self) -> str:
        return self.data["model"]

    @property
    def reasoning(self) -> dict[str, Any] | None:
        return self.data.get("reasoning")

    @property
    def voice(self) -> object:
        return self.data["audio"]["output"]["voice"]

    @property
    def speed(self) -> float:
        return self.data["audio"]["output"].get("speed") or 1.0

    @property
    def turn_detection(self) -> dict[str, Any] | None:
        return self.data["audio"]["input"]["turn_detection"]

    @property
    def vad_threshold(self) -> float:
        return (self.turn_detection or {}).get("threshold", SERVER_VAD_DEFAULTS["threshold"])

    @property
    def transcription(self) -> dict[str, Any] | None:
        return self.data["audio"]["input"].get("transcription")

    @property
    def instructions(self) -> str | None:
        return self.data.get("instructions")

    @property
    def tools(self) -> list[dict[str, Any]] | None:
        return self.data.get("tools")

    @property
    def tool_choice(self) -> object:
        return self.data.get("tool_choice")

    @property
    def output_modalities(self) -> list[str]:
        return self.data["output_modalities"]


def _with_defaults(name: str, setting: Any) -> Any:
    if setting is None:
        return None
    if name == "turn_detection":
        defaults = SEMANTIC_VAD_DEFAULTS if setting.get("type") == "semantic_vad" else SERVER_VAD_DEFAULTS
        return {**defaults, **setting}
    if name == "transcription":
        return {**TRANSCRIPTION_DEFAULTS, **setting}
    return setting
