"""What every grader takes and gives: `GradeInput`, `GradeResult`, the `Grader` interface, CRITERIA."""

from __future__ import annotations

from dataclasses import dataclass, field

from assessments.placement import Placement, ProbeRecord

# The qualitative aspects of spoken language use (CEFR Table 3).
CRITERIA = ("range", "accuracy", "fluency", "interaction", "coherence")


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

    @property
    def below_floor(self) -> bool:
        """Nothing was sustained: the rating A1 means "working towards A1"."""
        return self.floor is None

    @classmethod
    def from_placement(
        cls, placement: Placement, *, target_language, native_language, learner_turns=(), tutor_turns=()
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
        )


@dataclass(frozen=True)
class GradeResult:
    level: str
    criteria: dict[str, str] = field(hash=False)  # criterion -> CEFR level
    summary: str  # English, speakable, for the narrator
    grader: str  # "rules", "openai:<model>" or "rules (fallback: <reason>)"; fits Assessment.grader


class Grader:
    """Base class: a grader turns a `GradeInput` into a `GradeResult`."""

    async def grade(self, data: GradeInput) -> GradeResult:
        """The assessment of `data`."""
        raise NotImplementedError("subclasses of Grader must implement grade()")
