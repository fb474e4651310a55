"""What the learner is told first: the level sentence, known the moment placement ends (pure).

The level is the placement floor, so the narrator can say it at once while the grader is still
writing the feedback (DESIGN section 3, "No wait for grading"). Every grader's summary starts with
this sentence; a session without evidence gets `not_rated_summary` instead of a level.
"""

from __future__ import annotations

from assessments.cefr import LEVEL_NAMES
from assessments.grading.types import GradeInput

NOT_RATED_SUMMARY = (
    "There was not enough speaking in this session to place you, so it has no level. "
    "That is fine: next time, answer a few of the tutor's questions and you will get your level and feedback."
)


# Demo mode has no speech recognizer: spoken answers have no words, and timing alone places nobody.
NO_WORDS_SUMMARY = (
    "This demo cannot understand speech: it hears how long and how smoothly you speak, not what you say, "
    "so your spoken answers could not be placed and this session has no level. "
    "Written answers can be placed: type your answers in the box next time and you will get your level and feedback."
)
# With a recognizer, spoken answers whose transcription failed are as wordless.
NOT_TRANSCRIBED_SUMMARY = (
    "Your spoken answers could not be transcribed this time, so they could not be placed and this session "
    "has no level. Please try again, or type your answers in the box."
)


def not_rated_summary(data: GradeInput, recognizer: bool = False) -> str:
    """What a learner without a level is told: when they answered by voice and no words of it were
    known, that the demo cannot understand speech (`recognizer` False) or that the transcription
    failed; otherwise that there was too little to place."""
    spoken_without_words = any(
        m.get("mode") == "spoken" and not m.get("words_known") and m.get("fluency") for m in data.answer_measures
    )
    if not spoken_without_words:
        return NOT_RATED_SUMMARY
    return NOT_TRANSCRIBED_SUMMARY if recognizer else NO_WORDS_SUMMARY


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
