"""The card never contradicts itself: criteria and summary consistent with the level and the evidence.

Pure. Every grade passes through `reconcile` (both graders call it, and so do the handover and the
recovery sweep for whatever grader they were given); `contradictions` is the rule as a check, the one
the tests hold every reconciled grade to. The rule:

1. The level is the placement floor. A grader that sees it differently is recorded for the teacher
   (`GradeResult.grader_level`, `flag`), never silently applied.
2. Each criterion is a CEFR level within the band the placement allows (`band`): at most one below
   the level, and never at or above the ceiling, the level the learner broke down at twice (overall
   A2 with a ceiling at B1 cannot have fluency B1). With no ceiling found (cut short, or the top), one
   above the level is allowed: the level is a lower bound.
3. A criterion has evidence: a quote of what the learner said or wrote, or a judgement of one of their
   answers. Without any it is "not assessed", never a guessed level. Criteria a transcript cannot
   show (`NOT_FROM_TEXT`: pronunciation) are "not assessed" unless the input carries a measure of them.
4. The summary begins with the level sentence (`summary.opening`), and the feedback names no CEFR level
   but the learner's and the one above it (the next goal); otherwise the rules' feedback replaces it.
"""

from __future__ import annotations

import re
from dataclasses import replace

from assessments.cefr import LEVELS, level_index
from assessments.grading.summary import compose, feedback_after, opening
from assessments.grading.types import CRITERIA, GradeInput, GradeResult

NOT_FROM_TEXT = ("phonology",)  # CEFR phonological control: heard, not read
CONFIDENCES = ("low", "medium", "high")
_LEVEL_CODE = re.compile(r"\b([ABC][12])\b")
_SPACE = re.compile(r"\s+")


def criterion(level: str | None, evidence: str = "", confidence: str | None = None, note: str = "") -> dict:
    """One criterion as stored: {level, evidence, confidence} (+ note); level None is "not assessed"."""
    value = {"level": level, "evidence": evidence, "confidence": confidence if level else None}
    if note:
        value["note"] = note
    return value


def not_assessed(note: str) -> dict:
    return criterion(None, note=note)


def band(data: GradeInput) -> tuple[str, str]:
    """The lowest and highest level a criterion may have (rule 2)."""
    r = level_index(data.level)
    low = max(r - 1, 0)
    if data.below_floor:
        high = r
    elif data.ceiling is not None:
        high = max(r, min(r + 1, level_index(data.ceiling) - 1))
    else:
        high = min(r + 1, len(LEVELS) - 1)
    return LEVELS[low], LEVELS[high]


def _norm(text: str) -> str:
    return _SPACE.sub(" ", text.strip().strip("\"'«»“”").lower())


def has_evidence(data: GradeInput, evidence: str) -> bool:
    """Whether `evidence` quotes the learner or a judgement of one of their answers (rule 3)."""
    quote = _norm(evidence)
    if not quote:
        return False
    sources = [*data.learner_turns, *(p.evidence for p in data.probes)]
    return any(quote in _norm(source) for source in sources if source)


def _feedback_names_other_levels(data: GradeInput, feedback: str) -> bool:
    """Feedback may name the learner's level, and the one above only as the goal ("towards B2")."""
    above = LEVELS[level_index(data.level) + 1] if data.level != LEVELS[-1] else None
    for match in _LEVEL_CODE.finditer(feedback):
        code = match.group(1)
        if code == data.level:
            continue
        if code == above and feedback[: match.start()].rstrip().lower().endswith("towards"):
            continue
        return True
    return False


def contradictions(data: GradeInput, result: GradeResult) -> list[str]:
    """What in `result` contradicts the level or the evidence; empty when the card is consistent."""
    found = []
    if result.level != data.level:
        found.append(f"level {result.level} is not the placement level {data.level}")
    low, high = band(data)
    for name in (*CRITERIA, *NOT_FROM_TEXT):
        value = result.criteria.get(name)
        if not isinstance(value, dict):
            found.append(f"{name}: missing")
            continue
        level = value.get("level")
        if level is None:
            continue
        if name in NOT_FROM_TEXT and not data.measured(name):
            found.append(f"{name}: rated without a measure")
        if level not in LEVELS or not level_index(low) <= level_index(level) <= level_index(high):
            found.append(f"{name}: {level} outside {low}-{high}")
        if not has_evidence(data, value.get("evidence", "")):
            found.append(f"{name}: no evidence from the learner's answers")
        if value.get("confidence") not in CONFIDENCES:
            found.append(f"{name}: no confidence")
    first = opening(data)
    if not " ".join(result.summary.split()).startswith(first):
        found.append("the summary does not begin with the level")
    elif _feedback_names_other_levels(data, feedback_after(first, result.summary)):
        found.append("the feedback names another level")
    return found


def reconcile(data: GradeInput, result: GradeResult, rules_feedback) -> GradeResult:
    """`result` made consistent with the level and the evidence; what was changed is flagged for the
    teacher. `rules_feedback(data, criteria)` writes feedback when the grader's contradicts the level."""
    notes = [result.flag] if result.flag else []
    grader_level = result.grader_level
    if result.level != data.level:
        grader_level = grader_level or result.level
        notes.append(f"the grader's level {result.level} differs from the placement floor {data.level}")
    low, high = band(data)
    criteria = {}
    for name in (*CRITERIA, *NOT_FROM_TEXT):
        value = result.criteria.get(name)
        value = dict(value) if isinstance(value, dict) else criterion(value if value in LEVELS else None)
        level = value.get("level")
        if name in NOT_FROM_TEXT and not data.measured(name):
            criteria[name] = not_assessed("a transcript cannot show pronunciation")
            continue
        if level is None:
            criteria[name] = not_assessed(value.get("note") or "not enough evidence")
            continue
        if level not in LEVELS:
            criteria[name] = not_assessed("no valid level")
            continue
        if not has_evidence(data, value.get("evidence", "")):
            notes.append(f"{name} {level}: no quote from the learner's answers, not assessed")
            criteria[name] = not_assessed("no evidence in the learner's answers")
            continue
        clamped = LEVELS[min(max(level_index(level), level_index(low)), level_index(high))]
        if clamped != level:
            notes.append(f"{name} {level} is outside {low}-{high} for {data.level}; shown as {clamped}")
        confidence = value.get("confidence") if value.get("confidence") in CONFIDENCES else "low"
        criteria[name] = criterion(clamped, value.get("evidence", "").strip(), confidence)
    first = opening(data)
    feedback = feedback_after(first, result.summary)
    if _feedback_names_other_levels(data, feedback) or not feedback:
        if feedback:
            notes.append("the grader's feedback named another level; the rules' feedback is shown")
        feedback = rules_feedback(data, criteria)
    return replace(
        result,
        level=data.level,
        criteria=criteria,
        summary=compose(first, feedback),
        grader_level=grader_level if grader_level != data.level else None,
        flag="; ".join(notes),
    )
