"""What every grader takes and gives: `GradeInput`, `GradeResult`, the `Grader` interface, CRITERIA."""

from __future__ import annotations

from dataclasses import dataclass, field

from assessments.cefr import LEVELS
from assessments.placement import Placement, ProbeRecord

# The qualitative aspects of spoken language use (CEFR Table 3).
CRITERIA = ("range", "accuracy", "fluency", "interaction", "coherence")


@dataclass(frozen=True)
class Exchange:
    """One turn of the conversation, in order: who spoke, what they said, and for a learner's answer
    the judgement of it (a placement probe today; the independent rater's judgement plugs in here)."""

    role: str  # learner | tutor
    text: str
    judgement: ProbeRecord | None = None


@dataclass(frozen=True)
class GradeInput:
    """Everything a grader may use: the placement outcome and the session's text."""

    target_language: str
    native_language: str
    level: str  # the placement rating
    floor: str | None
    ceiling: str | None
    partial: bool
    end_reason: str
    probes: tuple[ProbeRecord, ...] = ()
    learner_turns: tuple[str, ...] = ()
    tutor_turns: tuple[str, ...] = ()
    # Per learner answer, in order: {"mode": spoken|written, "words_known", "fluency": {...}} (the
    # measures of assessments.fluency; written answers say nothing of spoken fluency).
    answer_measures: tuple[dict, ...] = field(default=(), hash=False)
    # The conversation in order, each learner answer with its judgement beside it (Transcript.grade_input).
    conversation: tuple[Exchange, ...] = ()
    # Measures beyond the text, by criterion (e.g. {"phonology": {...}} once pronunciation is measured).
    measures: dict = field(default_factory=dict, hash=False)
    # "en" (English, the default) or the learner's native language: the language of the feedback.
    feedback_language: str = "en"

    @property
    def below_floor(self) -> bool:
        """Nothing was sustained: the rating A1 means "working towards A1"."""
        return self.floor is None

    def measured(self, criterion: str) -> bool:
        """Whether something beyond the transcript measured `criterion` (pronunciation cannot be read)."""
        return bool(self.measures.get(criterion))

    @classmethod
    def from_placement(
        cls,
        placement: Placement,
        *,
        target_language,
        native_language,
        learner_turns=(),
        tutor_turns=(),
        answer_measures=(),
        conversation=(),
        feedback_language="en",
    ) -> GradeInput:
        return cls(
            target_language=target_language,
            native_language=native_language,
            level=placement.rating,
            floor=placement.floor,
            ceiling=placement.ceiling,
            partial=placement.partial,
            end_reason=placement.end_reason or "",
            probes=placement.probes,
            learner_turns=tuple(learner_turns),
            tutor_turns=tuple(tutor_turns),
            answer_measures=tuple(answer_measures),
            conversation=tuple(conversation),
            feedback_language=feedback_language,
        )


@dataclass(frozen=True)
class GradeResult:
    level: str  # always the placement floor (grading.consistency)
    # criterion -> {level, evidence, confidence} (level None: "not assessed"); older code stored criterion -> level
    criteria: dict[str, dict] = field(hash=False)
    summary: str  # the level sentence, then the feedback; speakable, for the narrator
    grader: str  # "rules", "openai:<model>" or "rules (fallback: <reason>)"; fits Assessment.grader
    grader_level: str | None = None  # the grader's own overall view, when it differs from the floor
    flag: str = ""  # for the teacher: where the grader disagreed with the floor or the evidence


class Grader:
    """Base class: a grader turns a `GradeInput` into a `GradeResult`."""

    async def grade(self, data: GradeInput) -> GradeResult:
        """The assessment of `data`."""
        raise NotImplementedError("subclasses of Grader must implement grade()")


def criteria_rows(criteria: dict) -> list[dict]:
    """The criteria as table rows, from either stored shape: {criterion: level} or
    {criterion: {level, evidence, confidence}}. A criterion without a level is "not assessed"."""
    rows = []
    for name in [*CRITERIA, *(c for c in criteria if c not in CRITERIA)]:
        value = criteria.get(name)
        detail = value if isinstance(value, dict) else {"level": value}
        level = detail.get("level") if detail.get("level") in LEVELS else None
        rows.append({
            "key": name, "name": name.replace("_", " ").capitalize(), "level": level,
            "evidence": detail.get("evidence") or "", "confidence": detail.get("confidence"),
        })
    return rows
