"""What Parla knows about OpenAI's models: which take `reasoning.effort`, and the announced shutdowns.

Plain Python (no Django): the settings check (`tutor/checks.py`), the runtime and the bundled simulator
all read it. The defaults themselves are in `config/settings.py`, each beside its source.

Source of every shutdown date below: the docstrings of the pinned `openai` package (3.57.0), which quote
https://developers.openai.com/api/docs/deprecations ("Deprecated values: ... Announced shutdown date"):
`openai/types/realtime/realtime_session_create_request.py` (realtime models),
`openai/types/realtime/audio_transcription.py` (transcription models) and
`openai/types/shared/chat_model.py` (text models, for the grader). When the package is upgraded, compare
its docstrings with this table.
"""

from __future__ import annotations

import typing

from openai.types.realtime.realtime_reasoning_effort import RealtimeReasoningEffort

# The values `reasoning.effort` takes (openai.types.realtime.RealtimeReasoningEffort).
REASONING_EFFORTS: tuple[str, ...] = typing.get_args(RealtimeReasoningEffort)

# "Configuration for reasoning-capable Realtime models such as `gpt-realtime-2`"
# (openai/types/realtime/realtime_reasoning.py); "Currently only the gpt-realtime-2 family supports it"
# (LiveKit's agents reference for the Realtime API's `reasoning`, citing the API reference
# developers.openai.com/api/reference/resources/realtime/subresources/calls/methods/accept).
REASONING_FAMILY_PREFIX = "gpt-realtime-2"

# model -> announced shutdown date (ISO). One line per model so that each names its shutdown.
ANNOUNCED_SHUTDOWNS: dict[str, str] = {
    # realtime_session_create_request.py: announced shutdown 2027-01-20
    "gpt-realtime": "2027-01-20",  # shutdown
    "gpt-realtime-2025-08-28": "2027-01-20",  # shutdown
    "gpt-realtime-mini": "2027-01-20",  # shutdown
    "gpt-realtime-mini-2025-12-15": "2027-01-20",  # shutdown
    "gpt-audio-mini": "2027-01-20",  # shutdown
    "gpt-audio-mini-2025-12-15": "2027-01-20",  # shutdown
    # audio_transcription.py: announced shutdown 2027-02-26
    "whisper-1": "2027-02-26",  # shutdown
    "gpt-4o-mini-transcribe": "2027-02-26",  # shutdown
    "gpt-4o-mini-transcribe-2025-12-15": "2027-02-26",  # shutdown
    "gpt-4o-transcribe": "2027-02-26",  # shutdown
    "gpt-4o-transcribe-diarize": "2027-02-26",  # shutdown
    # chat_model.py: text models a grader might be configured with
    "gpt-5.4-nano": "2027-04-01",  # shutdown
    "gpt-5.4-nano-2026-03-17": "2027-04-01",  # shutdown
    "gpt-5.1": "2027-04-01",  # shutdown
    "gpt-5.1-2025-11-13": "2027-04-01",  # shutdown
    "gpt-4.1": "2027-01-14",  # shutdown
    "gpt-4.1-mini": "2027-01-14",  # shutdown
    "gpt-4.1-2025-04-14": "2027-01-14",  # shutdown
    "gpt-4.1-mini-2025-04-14": "2027-01-14",  # shutdown
    "gpt-4o": "2027-01-14",  # shutdown
    "gpt-4o-2024-11-20": "2027-01-14",  # shutdown
    "gpt-4o-2024-08-06": "2027-01-14",  # shutdown
    "gpt-4o-mini": "2027-01-14",  # shutdown
    "gpt-4o-mini-2024-07-18": "2027-01-14",  # shutdown
    "gpt-5": "2026-12-11",  # shutdown
    "gpt-5-mini": "2026-12-11",  # shutdown
    "gpt-5-nano": "2026-12-11",  # shutdown
    "gpt-5-2025-08-07": "2026-12-11",  # shutdown
    "gpt-5-mini-2025-08-07": "2026-12-11",  # shutdown
    "gpt-5-nano-2025-08-07": "2026-12-11",  # shutdown
    "o3": "2026-12-11",  # shutdown
    "o3-2025-04-16": "2026-12-11",  # shutdown
    "gpt-4.1-nano": "2026-10-23",  # shutdown
    "gpt-4.1-nano-2025-04-14": "2026-10-23",  # shutdown
    "o4-mini": "2026-10-23",  # shutdown
    "o4-mini-2025-04-16": "2026-10-23",  # shutdown
    "o3-mini": "2026-10-23",  # shutdown
    "o3-mini-2025-01-31": "2026-10-23",  # shutdown
    "gpt-4-turbo": "2026-10-23",  # shutdown
    "gpt-3.5-turbo": "2026-10-23",  # shutdown
}


def shutdown_date(model: str) -> str | None:
    """The announced shutdown date of `model`, or None when none is announced."""
    return ANNOUNCED_SHUTDOWNS.get(model.strip())


def takes_reasoning(model: str | None) -> bool:
    """True for realtime models that accept `reasoning.effort` (the gpt-realtime-2 family)."""
    return bool(model) and model.strip().startswith(REASONING_FAMILY_PREFIX)
