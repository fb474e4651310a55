"""What the handover (tutor.runtime.delivery) needs and gives: its configuration, the tutor session it
hands over from (`TutorLink`), where it records the assessment (`AssessmentStore`), and its outcome.

The session runtime implements `TutorLink`, `DjangoAssessmentStore` the store; tests and the handover
benchmark implement both in memory (tutor.testing.loopback).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from assessments.grading import GradeResult
from tutor.realtime.client import RealtimeClient
from tutor.realtime.relay import SpeechRelay
from tutor.realtime.wire import State
from tutor.runtime.narrator import Narrator


@dataclass(frozen=True)
class HandoverConfig:
    summary_voice: str = "alloy"
    step_timeout: float = 5.0  # one confirmed protocol step
    grade_timeout: float = 30.0  # the grader has its own, shorter timeout and fallback
    speak_timeout: float = 120.0  # the whole summary, spoken in real time
    keepalive_interval: float = 1.0
    expected_grading_seconds: float = 8.0  # only shapes the progress bar


class AssessmentStore:
    """Where the worker records the assessment's progress. Subclasses implement every method."""

    async def graded(self, assessment_id: int, result: GradeResult) -> None:
        raise NotImplementedError("AssessmentStore subclasses must implement graded()")

    async def delivered(self, assessment_id: int, notes: str) -> None:
        raise NotImplementedError("AssessmentStore subclasses must implement delivered()")

    async def failed(self, assessment_id: int, reason: str) -> None:
        raise NotImplementedError("AssessmentStore subclasses must implement failed()")


class TutorLink:
    """What the worker needs of the live tutor session. The session runtime implements it."""

    client: RealtimeClient  # the tutor's upstream session (the runtime's TutorConnection: the same requests)
    relay: SpeechRelay  # forwards the tutor's speech to the learner
    state: State  # what the learner is shown now (changed only through `set_state`)
    narrator: Narrator  # the summary voice's session: prepared early, or opened by the handover

    def stop_learner_audio(self) -> None:
        raise NotImplementedError("TutorLink subclasses must implement stop_learner_audio()")

    async def set_state(self, state: State) -> None:
        """The session's state changes (the learner and the teachers' live view are told)."""
        raise NotImplementedError("TutorLink subclasses must implement set_state()")


@dataclass
class DeliveryOutcome:
    status: str  # "delivered" | "delivery_failed"
    result: GradeResult
    speaker: str = ""  # "narrator" | "tutor" | ""
    problems: list[str] = field(default_factory=list)
    # loop.time() of: ceiling (the handover began), first_audio (the level), level_done (its response.done),
    # grade_ready, feedback_audio
    timings: dict[str, float] = field(default_factory=dict)
