"""Which of the learner's answers may evidence a criterion at a level, and which one shows it best (pure).

What a teacher accepts as evidence of "range B1": a quote of an answer that handled a task, not the
answer the learner broke down on. So:

- an answer judged `breakdown` evidences weaknesses, not strengths: only a level below both the level
  it broke down at and the placement level (the ceiling's "no sé" shows nothing at the ceiling, nor
  at the level placed; for "working towards A1", nothing); an answer judged `not_ratable` (silence,
  off-task, another language, the question repeated) evidences nothing;
- an answer without words (spoken in demo mode) can evidence fluency only, by its timing: never
  range, accuracy, interaction or coherence;
- each criterion quotes the answer that shows it best at its level (`pick`), and no two criteria quote
  the same answer while another answer could be quoted.

An answer's judgement comes from `GradeInput.conversation`; inputs without a conversation (older
records) give the learner's turns without judgements, taken as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from assessments.cefr import level_index
from assessments.grading.types import GradeInput
from assessments.placement import BREAKDOWN, NOT_RATABLE, ProbeRecord
from assessments.quotes import ELLIPSIS, bare

FLUENCY = "fluency"
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Source:
    """One learner answer as evidence: its words, its judgement, how it was given and its timing."""

    text: str
    judgement: ProbeRecord | None = None
    mode: str = ""  # spoken | written | "" (unknown)
    fluency: dict | None = None

    def can_show(self, criterion: str, level: str, placed: int = 0) -> bool:
        """Whether this answer may evidence `criterion` at `level` in a placement at level index
        `placed` (0 for "working towards A1")."""
        j = self.judgement
        if j is not None and (j.outcome == NOT_RATABLE and self.text or
                              j.outcome == BREAKDOWN and level_index(level) >= min(level_index(j.level), placed)):
            return False
        return bool(self.text) or criterion == FLUENCY and bool(self.fluency)


def sources(data: GradeInput) -> list[Source]:
    """The learner's answers in order, each with its judgement and measures when known."""
    learner = [e for e in data.conversation if e.role == "learner"]
    if not learner:
        return [Source(t) for t in data.learner_turns if t.strip()]
    measures = list(data.answer_measures) + [{}] * max(0, len(learner) - len(data.answer_measures))
    return [
        Source(e.text, e.judgement, m.get("mode", ""), m.get("fluency") or None)
        for e, m in zip(learner, measures)
    ]


def norm(text: str) -> str:
    """Text as quotes are compared: no quotation marks or ellipsis around it, lower case, spaces single."""
    text = bare(text).strip(ELLIPSIS + ".").strip()
    return _SPACE.sub(" ", text.lower())


def quoted(source: Source, evidence: str) -> bool:
    """Whether `evidence` quotes this answer's words, or is this answer's judgement."""
    quote = norm(evidence)
    if not quote:
        return False
    if source.text and quote in norm(source.text):
        return True
    return bool(source.judgement and source.judgement.evidence and quote in norm(source.judgement.evidence))


def unfit(data: GradeInput, criterion: str, level: str, evidence: str) -> str:
    """Why `evidence` cannot evidence `criterion` at `level` ("" when it can, or when it quotes no
    known answer: `consistency.has_evidence` says whether it quotes the learner at all)."""
    matching = [s for s in sources(data) if quoted(s, evidence)]
    if not matching or any(s.can_show(criterion, level, placed(data)) for s in matching):
        return ""
    if all(not s.text for s in matching):
        return "timing shows fluency only"
    return "quotes an answer that broke down, or was not ratable"


def placed(data: GradeInput) -> int:
    """The placement level's index, 0 for "working towards A1" (no breakdown answer evidences anything)."""
    return 0 if data.below_floor else level_index(data.level)


def pick(
    answers: list[Source], criterion: str, level: str, used: set[int], key: Callable[[Source], float], placed: int = 0,
    among: Callable[[Source], bool] = lambda s: True,
) -> int | None:
    """The index in `answers` of the one that best shows `criterion` at `level`: among those that may
    evidence it (and pass `among`), one not quoted yet (`used`: indices) if any; then one judged at
    that level, then the highest judged below it; then by `key` (the criterion's own measure, larger
    is better)."""
    fit = [i for i, s in enumerate(answers) if among(s) and s.can_show(criterion, level, placed)]
    if not fit:
        return None
    target = level_index(level)

    def rank(i: int):
        s = answers[i]
        judged = level_index(s.judgement.level) if s.judgement and s.judgement.outcome != BREAKDOWN else -1
        closeness = 2 if judged == target else 1 if 0 <= judged < target else 0
        return (i not in used, closeness, judged if judged <= target else -judged, key(s), -i)

    return max(fit, key=rank)
