"""SessionConfig: what a learner's session is set up with, read from the settings once at its start.

Apart from the runtime so that the runtime and its parts take plain values (tests build one with
`dataclasses.replace`), and the settings are read in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings

from assessments.grading import Grader, get_grader
from assessments.rating import OfflineRater, Rater, get_rater
from assessments.services import feedback_language
from config.openai_models import takes_reasoning
from tutor import persona
from tutor.runtime.handover import HandoverConfig


@dataclass(frozen=True)
class SessionConfig:
    target_language: str
    native_language: str
    tutor_voice: str
    summary_voice: str
    transcription_model: str
    reasoning_effort: str  # empty: the model's default
    speed_beginner: float
    speed_default: float
    max_seconds: float
    step_timeout: float
    grader: Grader = field(hash=False)
    rater: Rater = field(hash=False, default_factory=OfflineRater)
    min_rated_answers: int = 2  # fewer rated answers: the session ends not_rated
    self_assessment: str = ""  # the warm-up's answer on the start screen ("" = not sure)
    feedback_language: str = "en"  # the learner's native language when they asked for feedback in it

    @classmethod
    def for_learner(cls, learner) -> "SessionConfig":
        return cls(
            target_language=learner.target_language,
            native_language=learner.native_language,
            tutor_voice=settings.PARLA_TUTOR_VOICE,
            summary_voice=settings.PARLA_SUMMARY_VOICE,
            transcription_model=settings.PARLA_TRANSCRIPTION_MODEL,
            reasoning_effort=settings.PARLA_REASONING_EFFORT,
            speed_beginner=settings.PARLA_SPEED_BEGINNER,
            speed_default=settings.PARLA_SPEED_DEFAULT,
            max_seconds=settings.PARLA_SESSION_MAX_MINUTES * 60,
            step_timeout=settings.PARLA_STEP_TIMEOUT,
            grader=get_grader(),
            rater=get_rater(),
            min_rated_answers=settings.PARLA_MIN_RATED_ANSWERS,
            feedback_language=feedback_language(learner),
        )

    @property
    def handover(self) -> HandoverConfig:
        return HandoverConfig(summary_voice=self.summary_voice, step_timeout=self.step_timeout)

    def tutor_session(self, level: str, model: str, *, initial: bool) -> dict:
        """The tutor's upstream session configuration at `level`; after the first, without the voice."""
        session = persona.tutor_session_config(
            target_language=self.target_language,
            native_language=self.native_language,
            level=level,
            voice=self.tutor_voice,
            transcription_model=self.transcription_model,
            speed_beginner=self.speed_beginner,
            speed_default=self.speed_default,
            reasoning_effort=self.reasoning_effort if takes_reasoning(model) else None,
        )
        if not initial:
            # The voice is fixed once the tutor has spoken: a level update never mentions it.
            del session["audio"]["output"]["voice"]
        return session
