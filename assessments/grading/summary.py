"""What the learner is told first: the level sentence, known the moment placement ends (pure).

The level is the placement floor, so the narrator can say it at once while the grader is still
writing the feedback (DESIGN section 3, "No wait for grading"). Every grader's summary starts with
this sentence; a session without evidence gets `NOT_RATED_SUMMARY` instead of a level.
"""

from __future__ import annotations

from assessments.cefr import LEVEL_NAMES
from assessments.grading.types import GradeInput

NOT_RATED_SUMMARY = (
    "There was not enough speaking in this session to place you, so it has no level. "
    "That is fine: next time, answer a few of the tutor's questions and you will get your level and feedback."
)


def level_name(level: str) -> str:
    return f"{level}, {LEVEL_NAMES[level]}"


def opening(data: GradeInput) -> str:
    """The first sentence of the summary: the level, and how sure it is (never more than is known)."""
    name = level_name(data.level)
    if data.below_floor:
        return f"You are working towards level {name}: you are not yet sustaining {data.level} tasks on your own."
    if data.partial:
        return (
            f"Your speaking level is at least {name}: you sustained {data.level} tasks before the session ended, "
            "so this result is provisional."
        )
    return f"Your speaking level is {name}."


def compose(first: str, feedback: str) -> str:
    """The whole summary: the level sentence, then the grader's feedback."""
    return " ".join(part for part in (" ".join(first.split()), " ".join(feedback.split())) if part)


def feedback_after(first: str, summary: str) -> str:
    """What is left to say of `summary` once `first` was spoken (all of it if it does not start so)."""
    summary = " ".join(summary.split())
    first = " ".join(first.split())
    return summary[len(first):].strip() if first and summary.startswith(first) else summary
