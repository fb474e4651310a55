"""The deterministic grader: criteria from probes and transcript statistics, a speakable summary.

Pure (no I/O): `grade_by_rules` is the work, `RulesGrader` the `Grader` around it, and
`fallback_grade` the same grade labelled with why the grader in charge could not answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from assessments.cefr import LEVEL_NAMES, LEVELS, level_index, next_level
from assessments.grading import consistency
from assessments.fluency import FluencyMeasures
from assessments.grading.consistency import QUOTE_CHARS, band, criterion, not_assessed
from assessments.grading.evidence import Source, pick, placed, sources
from assessments.grading.summary import compose, opening
from assessments.grading.types import CRITERIA, GradeInput, GradeResult, Grader
from assessments.placement import SUSTAINED
from assessments.quotes import quote
from assessments.rating.offline import spoken_level

# The value of a transcript statistic at which each level (A1..C2) is met. Deliberately coarse:
# they only nudge a criterion one step around the placement rating, never the rating itself.
WORDS_PER_TURN = (2, 5, 9, 14, 20, 28)  # fluency: sustained talk per turn
GUIRAUD = (2.5, 3.5, 4.5, 5.5, 6.5, 7.5)  # range: types / sqrt(tokens), less length-bound than type/token
LONGEST_TURN = (4, 10, 20, 35, 50, 70)  # coherence: the longest connected stretch, in words

_WORD = re.compile(r"\w+(?:['’-]\w+)*")


@dataclass(frozen=True)
class TranscriptStats:
    turns: int
    words: int
    types: int
    words_per_turn: float
    guiraud: float
    longest_turn: int
    minimal_share: float  # turns of at most two words ("sí", "no sé")
    questions: int  # turns where the learner asked something back

    @classmethod
    def of(cls, turns: tuple[str, ...]) -> TranscriptStats:
        tokens = [_WORD.findall(turn.lower()) for turn in turns if turn.strip()]
        words = [word for turn in tokens for word in turn]
        n = len(tokens)
        return cls(
            turns=n,
            words=len(words),
            types=len(set(words)),
            words_per_turn=len(words) / n if n else 0.0,
            guiraud=len(set(words)) / len(words) ** 0.5 if words else 0.0,
            longest_turn=max((len(turn) for turn in tokens), default=0),
            minimal_share=sum(len(turn) <= 2 for turn in tokens) / n if n else 0.0,
            questions=sum("?" in turn for turn in turns),
        )


def _met(value: float, thresholds: tuple[float, ...]) -> int:
    """Index of the highest level whose threshold `value` reaches (0 if none)."""
    return max((i for i, t in enumerate(thresholds) if value >= t), default=0)


def _probe_score(data: GradeInput, rating: int) -> int:
    """-1, 0 or +1 from how cleanly the learner handled the rating level and the one above it."""
    levels = {LEVELS[rating], next_level(LEVELS[rating])}
    relevant = [p for p in data.probes if p.level in levels]
    if not relevant:
        return 0
    share = sum(p.outcome == SUSTAINED for p in relevant) / len(relevant)
    # Clean at the rating + breakdowns above gives 0.5: the expected profile. A sustained probe above
    # the ceiling lifts the share, breakdowns on the way to the rating lower it.
    return 1 if share > 0.55 else -1 if share < 0.45 else 0


def _confidence(n: int, medium: int, high: int) -> str:
    return "high" if n >= high else "medium" if n >= medium else "low"


def _words(source: Source) -> int:
    return len(_WORD.findall(source.text.lower()))


def _spoken_fluency(source: Source) -> FluencyMeasures | None:
    if source.mode != "spoken" or not source.fluency:
        return None
    try:
        return FluencyMeasures(**{k: v for k, v in source.fluency.items() if k in FluencyMeasures.__dataclass_fields__})
    except TypeError:  # an older record without every measure
        return None


def rules_criteria(data: GradeInput) -> dict[str, dict]:
    """Each criterion within the band the placement allows (consistency.band), from probes and
    transcript statistics, each quoting the answer that shows it best at its level (grading.evidence:
    never one the learner broke down on at that level, no answer quoted twice while another could be)
    and a confidence. Without the learner's words there is nothing to quote: those criteria are "not
    assessed"; fluency alone can rest on the timing of spoken answers."""
    r = level_index(data.level)
    low, high = (level_index(x) for x in band(data))
    answers = sources(data)
    worded = tuple(s.text for s in answers if s.text)
    stats = TranscriptStats.of(worded)
    used: set[int] = set()

    def near(i: int) -> str:
        return LEVELS[min(max(i, low), high)]

    def cite(name: str, level: str, key, confidence: str, missing: str, among=lambda s: True) -> dict:
        chosen = pick(answers, name, level, used, key, placed(data), among)
        if chosen is None:
            return not_assessed(missing)
        used.add(chosen)
        source = answers[chosen]
        if source.text:
            return criterion(level, quote(source.text, QUOTE_CHARS), confidence)
        return criterion(level, source.judgement.evidence if source.judgement else "", confidence)

    nothing = "no words of the learner were transcribed"
    judged = [p for p in data.probes if p.level in {data.level, next_level(data.level)}]
    criteria = {"accuracy": cite(
        "accuracy", near(r + _probe_score(data, r)), _words, _confidence(len(judged), 2, 4),
        "no answer in words that the rater judged" if worded else nothing,
    )}
    if stats.words:
        sure = _confidence(stats.words, 20, 60)
        if stats.minimal_share > 0.5:
            interaction = r - 1
        elif stats.minimal_share <= 0.2 and stats.questions >= 2:
            interaction = r + 1
        else:
            interaction = r
        criteria["range"] = cite("range", near(_met(stats.guiraud, GUIRAUD)),
                                 lambda s: len(set(_WORD.findall(s.text.lower()))), sure, nothing)
        criteria["coherence"] = cite("coherence", near(_met(stats.longest_turn, LONGEST_TURN)), _words, sure, nothing)
        criteria["interaction"] = cite("interaction", near(interaction),
                                       lambda s: ("?" in s.text) * 1000 - _words(s), _confidence(stats.turns, 3, 6),
                                       nothing)
    else:
        criteria.update({c: not_assessed(nothing) for c in ("range", "coherence", "interaction")})
    spoken = [(m, s) for s in answers if (m := _spoken_fluency(s)) is not None and not m.silent]
    if spoken:
        # Fluency from what the audio of the spoken answers shows (the written ones show none of it).
        measured = max(spoken, key=lambda pair: pair[0].speaking_ms)[0]
        level = spoken_level(measured)
        criteria["fluency"] = cite("fluency", near(level_index(level) if level else 0),
                                   lambda s: _spoken_fluency(s).speaking_ms, _confidence(len(spoken), 2, 4),
                                   "no spoken answer", among=lambda s: _spoken_fluency(s) is not None)
    elif answers and all(s.mode == "written" for s in answers):
        criteria["fluency"] = not_assessed("written answers show no spoken fluency")
    elif stats.words:
        criteria["fluency"] = cite("fluency", near(_met(stats.words_per_turn, WORDS_PER_TURN)), _words,
                                   _confidence(stats.words, 20, 60), nothing)
    else:
        criteria["fluency"] = not_assessed(nothing)
    criteria["phonology"] = not_assessed("a transcript cannot show pronunciation")
    return {name: criteria[name] for name in (*CRITERIA, "phonology")}


STRENGTHS = {
    "range": "you use a good variety of words for your level",
    "accuracy": "you handle the tasks at your level accurately and consistently",
    "fluency": "you keep talking and give full answers",
    "interaction": "you engage with the questions and keep the conversation going",
    "coherence": "you connect your ideas into longer stretches of speech",
}
NEXT_STEPS = {
    "range": "build your vocabulary around everyday topics and try new words in conversation",
    "accuracy": "work on accuracy in the structures you already use",
    "fluency": "practise giving longer answers without long pauses",
    "interaction": "ask questions back and build on what the other person says",
    "coherence": "link your ideas with connecting words such as because, however and then",
}


def assessed_levels(criteria: dict) -> dict[str, str]:
    """criterion -> level of the criteria that were assessed (either stored shape)."""
    levels = {}
    for name in CRITERIA:
        value = criteria.get(name)
        level = value.get("level") if isinstance(value, dict) else value
        if level in LEVELS:
            levels[name] = level
    return levels


def speakable_feedback(data: GradeInput, criteria: dict) -> str:
    """What follows the level sentence: one strength and one next step, in plain English."""
    level = data.level
    name = f"{level}, {LEVEL_NAMES[level]}"
    above = next_level(level)
    if data.below_floor:
        goal = f"to reach {name}"
    elif above:
        goal = f"to move towards {above}, {LEVEL_NAMES[above]}"
    else:
        goal = "to keep your level sharp"
    levels = assessed_levels(criteria)
    if len(levels) < 2:  # no strength to name without evidence for it
        return f"There was too little of your speech in words to say more; give longer answers next time, {goal}."
    # Ties go to the earlier criterion: deterministic, and CRITERIA starts with the broad ones.
    strength = max(levels, key=lambda c: level_index(levels[c]))
    step = min((c for c in levels if c != strength), key=lambda c: level_index(levels[c]))
    return f"Your strength is {strength}: {STRENGTHS[strength]}. As a next step, {NEXT_STEPS[step]}, {goal}."


def speakable_summary(data: GradeInput, level: str, criteria: dict[str, str]) -> str:
    """Plain English for the narrator: the level sentence (`summary.opening`), a strength, a next step."""
    return compose(opening(replace(data, level=level)), speakable_feedback(replace(data, level=level), criteria))


def grade_by_rules(data: GradeInput) -> GradeResult:
    """The deterministic assessment: the level is always the placement rating."""
    level_index(data.level)  # ValueError for an unknown level
    criteria = rules_criteria(data)
    return reconcile(data, GradeResult(data.level, criteria, speakable_summary(data, data.level, criteria), "rules"))


def reconcile(data: GradeInput, result: GradeResult) -> GradeResult:
    """`consistency.reconcile` with the rules' feedback for a grader whose feedback contradicts the level."""
    return consistency.reconcile(data, result, speakable_feedback)


class RulesGrader(Grader):
    async def grade(self, data: GradeInput) -> GradeResult:
        return grade_by_rules(data)


def fallback_grade(data: GradeInput, exc: Exception) -> GradeResult:
    """The rules' grade, labelled with why the grader in charge could not answer."""
    return replace(grade_by_rules(data), grader=f"rules (fallback: {_fallback_reason(exc)})")


def _fallback_reason(exc: Exception) -> str:
    """A short reason; "rules (fallback: <reason>)" must fit Assessment.grader (32 characters)."""
    import openai  # lazily: the rules themselves need no client library

    if isinstance(exc, (TimeoutError, openai.APITimeoutError)):
        return "timeout"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, (ValueError, KeyError, TypeError)):  # includes pydantic's ValidationError
        return "bad output"
    return "error"
