"""What every rater takes and gives: an `Answer`, a `Judgement`, and the `Rater` interface (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field

from assessments.fluency import FluencyMeasures
from assessments.placement import BREAKDOWN, NOT_RATABLE, SUSTAINED
from assessments.placement import JUDGEMENTS as JUDGEMENT_OUTCOMES

__all__ = ["BREAKDOWN", "JUDGEMENT_OUTCOMES", "NOT_RATABLE", "SPOKEN", "SUSTAINED", "WRITTEN", "Answer", "Judgement", "Rater"]
SPOKEN, WRITTEN = "spoken", "written"


@dataclass(frozen=True)
class Answer:
    """One learner answer: everything said or typed between two tutor turns, fragments merged.

    `text` holds only the learner's own words: what they typed, or what a speech recognizer actually
    produced. When no words are known (`words_known` False) it is empty, never a guess.
    """

    language: str  # the target language
    level: str  # the level probed: the tutor's level when it asked
    task: str  # what the tutor asked ("" if unknown)
    mode: str  # "written" when any of it was typed (rated as written), else "spoken"
    text: str = ""
    words_known: bool = False
    fluency: FluencyMeasures | None = None  # spoken answers: measured from the learner's audio

    @property
    def word_count(self) -> int:
        return len(self.text.split())


@dataclass(frozen=True)
class Judgement:
    """The rater's verdict on one answer."""

    level: str  # the level probed
    outcome: str  # sustained | breakdown | not_ratable
    evidence: str  # a quote of the answer, or the measure it rests on
    rater: str  # "offline", "openai:<model>", or "offline (fallback: ...)"
    mode: str  # spoken | written
    measures: dict = field(default_factory=dict, hash=False)  # what the rater used

    def __post_init__(self):
        if self.outcome not in JUDGEMENT_OUTCOMES:
            raise ValueError(f"invalid outcome {self.outcome!r}")


class Rater:
    """Base class: a rater judges one answer at the level it probed, independently of the tutor."""

    name = "rater"

    async def rate(self, answer: Answer) -> Judgement:
        """The judgement of `answer`."""
        raise NotImplementedError("subclasses of Rater must implement rate()")

    async def prepare(self, language: str) -> None:
        """Get ready to rate answers in `language` (load what is slow to load); optional."""
