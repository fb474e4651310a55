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
   Nor above the highest level at which any answer was judged sustained: an "at least A1" card does
   not show criteria at A2 that no answer sustained.
3. A criterion has evidence: a quote of what the learner said or wrote, or a judgement of one of their
   answers. Without any it is "not assessed", never a guessed level. Criteria a transcript cannot
   show (`NOT_FROM_TEXT`: pronunciation) are "not assessed" unless the input carries a measure of them.
   The evidence must be able to show the criterion at its level (`grading.evidence`): not an answer
   the learner broke down on at that level or below, not an answer judged not ratable, and timing
   (a spoken answer without words) for fluency only. No two criteria quote the same answer while
   another could be quoted. Quotes are stored as `assessments.quotes.quote` makes them (one pair of
   quotation marks, cut at a word boundary); displays add none.
4. The summary begins with the level sentence (`summary.opening`), and the feedback names no CEFR level
   but the learner's and the one above it (the next goal); otherwise the rules' feedback replaces it.
"""

from __future__ import annotations

import re
from dataclasses import replace

from assessments.cefr import LEVELS, level_index
from assessments.grading.evidence import norm, pick, placed, quoted, sources, unfit
from assessments.grading.summary import compose, feedback_after, opening
from assessments.grading.types import CRITERIA, GradeInput, GradeResult
from assessments.placement import SUSTAINED
from assessments.quotes import bare, quote

QUOTE_CHARS = 120  # a criterion's quote: about twenty words, cut at a word boundary

NOT_FROM_TEXT = ("phonology",)  # CEFR phonological control: heard, not read
CONFIDENCES = ("low", "medium", "high")
_LEVEL_CODE = re.compile(r"\b([ABC][12])\b")


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
    sustained = [level_index(p.level) for p in data.probes if p.outcome == SUSTAINED]
    high = min(high, max([r, *sustained]))  # never above what some answer sustained
    return LEVELS[low], LEVELS[high]


def has_evidence(data: GradeInput, evidence: str) -> bool:
    """Whether `evidence` quotes the learner or a judgement of one of their answers (rule 3)."""
    quote = norm(evidence)
    if not quote:
        return False
    texts = [*data.learner_turns, *(p.evidence for p in data.probes)]
    return any(quote in norm(text) for text in texts if text)


def repeated_quotes(data: GradeInput, criteria: dict) -> list[str]:
    """Criteria quoting an answer an earlier criterion already quotes, while some answer in words that
    could show them is quoted by none (rule 3)."""
    answers = sources(data)
    quoted_by: dict[str, list[int]] = {}
    for name in CRITERIA:
        value = criteria.get(name)
        if isinstance(value, dict) and value.get("level") in LEVELS and value.get("evidence"):
            quoted_by[name] = [i for i, s in enumerate(answers) if s.text and quoted(s, value["evidence"])]
    taken = {i for found in quoted_by.values() for i in found}
    repeated, seen = [], set()
    for name, found in quoted_by.items():
        if found and set(found) <= seen:
            level = criteria[name]["level"]
            if any(i not in taken and s.can_show(name, level, placed(data)) for i, s in enumerate(answers) if s.text):
                repeated.append(name)
        seen.update(found)
    return repeated


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
        elif why := unfit(data, name, level, value.get("evidence", "")):
            found.append(f"{name} {level}: {why}")
        elif _misquoted(data, value.get("evidence", "")):
            found.append(f"{name}: the quote is not as quotes are shown")
        if value.get("confidence") not in CONFIDENCES:
            found.append(f"{name}: no confidence")
    found += [f"{name}: repeats another criterion's quote" for name in repeated_quotes(data, result.criteria)]
    first = opening(data)
    if not " ".join(result.summary.split()).startswith(first):
        found.append("the summary does not begin with the level")
    elif _feedback_names_other_levels(data, feedback_after(first, result.summary)):
        found.append("the feedback names another level")
    return found


def as_shown(data: GradeInput, evidence: str) -> str:
    """Evidence as stored and shown: a quote of the learner's words in one pair of quotation marks,
    cut at a word boundary; a judgement or measure (no quote of an answer) as it is."""
    words = bare(evidence)
    if any(s.text and norm(words) and norm(words) in norm(s.text) for s in sources(data)):
        return quote(words, QUOTE_CHARS)
    return " ".join(evidence.split())


def _misquoted(data: GradeInput, evidence: str) -> bool:
    return as_shown(data, evidence) != " ".join(evidence.split())


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
        evidence = value.get("evidence", "")
        if why := unfit(data, name, clamped, evidence):
            notes.append(f"{name} {clamped}: the evidence {why}, not assessed")
            criteria[name] = not_assessed(f"no answer shows it at {clamped}")
            continue
        confidence = value.get("confidence") if value.get("confidence") in CONFIDENCES else "low"
        criteria[name] = criterion(clamped, as_shown(data, evidence), confidence)
    for name in repeated_quotes(data, criteria):
        value = criteria[name]
        answers = sources(data)
        used = {i for other, v in criteria.items() if other != name and v.get("level")
                for i, s in enumerate(answers) if s.text and quoted(s, v.get("evidence", ""))}
        chosen = pick(answers, name, value["level"], used, lambda s: len(s.text), placed(data))
        if chosen is not None and chosen not in used:
            notes.append(f"{name}: quoted the same answer as another criterion; another answer is quoted")
            criteria[name] = {**value, "evidence": quote(answers[chosen].text, QUOTE_CHARS)}
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
