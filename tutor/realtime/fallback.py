"""When the API refuses part of the tutor's session configuration: a documented fallback, not a failed session.

The transcription model and the turn detection are the parts of the tutor's `session.update` that the
sources disagree on (tutor/persona.py says which model family takes what, and where each fact is from).
If the API refuses one of them, the first `session.update` fails and, before issue 25, the learner's
session ended `upstream_unavailable`. Now the refused part steps down, and the session goes on:

    transcription   the configured model -> the same with the language in the other field shape
                    (`languages` / `language`: the sources disagree) -> persona.TRANSCRIPTION_FALLBACK
                    (gpt-transcribe) in each shape -> none (answers show as spoken, with their length,
                    never with made-up words; the rater judges them from their audio)
    turn detection  semantic_vad -> server_vad with the beginners' long silence (persona.SILENCE_MS_BEGINNER)

Which part was refused is read from the error's `param` (`session.audio.input.transcription...`), else
its message ("Turn detection is not supported for this transcription model": a transcription model that
needs turn detection off, OpenWhispr/openwhispr#2077, is a refusal of the transcription model: Parla
needs turn detection for its turns). Each step is logged once per process with the API's own text.
The steps taken stay with the session (`SessionShape`): every later `session.update` (a level change, a
resumed session) sends the configuration that was accepted.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from tutor import persona
from tutor.realtime.client import RealtimeClient, RealtimeRequestError

logger = logging.getLogger(__name__)

TRANSCRIPTION = "transcription"
TURN_DETECTION = "turn_detection"
_logged: set[tuple[str, str]] = set()  # (part, the API's message): logged once per process


def refused_part(error: Any) -> str | None:
    """`transcription`, `turn_detection`, or None (a refusal of something else: no fallback)."""
    param = (getattr(error, "param", None) or "").lower()
    message = (getattr(error, "message", None) or "").lower()
    if "transcription" in param or "transcription" in message:
        return TRANSCRIPTION
    if "turn_detection" in param or "turn detection" in message or "vad" in param:
        return TURN_DETECTION
    return None


def transcription_steps(configured: dict) -> list[dict | None]:
    """What the transcription steps down through when the API refuses it: the configured object, the
    same model with the language in the other field shape (`languages` or `language`: the sources
    disagree per model, tutor/persona.py), the fallback model in each shape, then none."""
    language = configured.get("language") or (configured.get("languages") or [None])[0]
    fallback = persona.transcription_config(persona.TRANSCRIPTION_FALLBACK, language)
    steps: list[dict | None] = []
    for step in (configured, _other_shape(configured, language), fallback, _other_shape(fallback, language), None):
        if step not in steps:
            steps.append(step)
    return steps


def _other_shape(transcription: dict, language: str | None) -> dict:
    shaped = {k: v for k, v in transcription.items() if k not in ("language", "languages")}
    if "languages" in transcription:
        return {**shaped, "language": language}
    return {**shaped, "languages": [language]}


class SessionShape:
    """The fallback steps one tutor session took; applied to every tutor `session` object it sends."""

    def __init__(self) -> None:
        self.transcription_step = 0  # an index into transcription_steps(the configured transcription)
        self.server_vad_only = False

    def apply(self, session: dict) -> dict:
        """`session` (a tutor session object from persona) with the steps taken."""
        audio_input = session.get("audio", {}).get("input")
        if not audio_input:
            return session
        session = copy.deepcopy(session)
        audio_input = session["audio"]["input"]
        transcription = audio_input.get("transcription")
        if transcription and self.transcription_step:
            steps = transcription_steps(transcription)
            audio_input["transcription"] = steps[min(self.transcription_step, len(steps) - 1)]
        detection = audio_input.get("turn_detection")
        if self.server_vad_only and detection and detection.get("type") == "semantic_vad":
            audio_input["turn_detection"] = persona.turn_detection_for(persona.BEGINNER_LEVELS[-1])
        return session

    def step_down(self, part: str, session: dict) -> bool:
        """Take the next step for `part` of `session` (as persona made it, before `apply`); False when
        there is none left (the refusal stands)."""
        audio_input = session.get("audio", {}).get("input") or {}
        transcription = audio_input.get("transcription")
        if part == TRANSCRIPTION and transcription:
            if self.transcription_step + 1 >= len(transcription_steps(transcription)):
                return False
            self.transcription_step += 1
            return True
        detection = audio_input.get("turn_detection") or {}
        if part == TURN_DETECTION and detection.get("type") == "semantic_vad" and not self.server_vad_only:
            self.server_vad_only = True
            return True
        return False

    async def open(self, client: RealtimeClient, session: dict, timeout: float) -> Any:
        """`client.open` with the fallbacks: connect, then `session.update` until one is accepted or a
        refusal has no step left (then it is raised, and the socket closed). Returns `session.created`."""
        try:
            created = await client.connect()
            await self.configure(client, session, timeout)
        except BaseException:
            await client.close()
            raise
        return created

    async def configure(self, client: RealtimeClient, session: dict, timeout: float) -> Any:
        """`session.update` with `session` as shaped, stepping down what the API refuses."""
        while True:
            shaped = self.apply(session)
            try:
                return await client.request({"type": "session.update", "session": shaped}, "session.updated", timeout)
            except RealtimeRequestError as exc:
                part = refused_part(exc.error)
                if part is None or not self.step_down(part, session):
                    raise
                if (part, exc.error.message or "") not in _logged:
                    _logged.add((part, exc.error.message or ""))
                    logger.warning(
                        "session configuration refused: falling back",
                        extra={"part": part, "code": exc.code, "error_message": exc.error.message,
                               "param": exc.error.param, "refused": shaped["audio"]["input"].get(part),
                               "fallback": self.apply(session)["audio"]["input"].get(part)},
                    )
