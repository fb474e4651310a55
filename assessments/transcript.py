"""The conversation of a session, in order (pure, no Django).

It is the one source of what was said: the live session appends to it (and stores each utterance as a
`Turn` row), grading reads it, and an expired upstream session is resumed by replaying it. After a
server restart it is rebuilt from the `Turn` rows (`Transcript(rows)`), so every grading path sees
the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from assessments.grading import GradeInput
from assessments.placement import Placement
from assessments.text import storable_text

LEARNER, TUTOR, NARRATOR = "learner", "tutor", "narrator"


@dataclass(frozen=True)
class Utterance:
    role: str  # learner | tutor | narrator
    text: str
    item_id: str = ""
    level: str = ""  # the placement level when it was said


class Transcript:
    def __init__(self, utterances: Iterable[Utterance] = ()):
        self.utterances: list[Utterance] = list(utterances)

    def add(self, role: str, text: str | None, item_id: str = "", level: str = "") -> Utterance | None:
        """Append what `role` said; None (and nothing appended) when there are no words."""
        text = storable_text(text or "").strip()
        if not text:
            return None
        utterance = Utterance(role, text, item_id, level)
        self.utterances.append(utterance)
        return utterance

    def texts(self, role: str) -> tuple[str, ...]:
        return tuple(u.text for u in self.utterances if u.role == role)

    @property
    def conversation(self) -> list[Utterance]:
        """The learner's and the tutor's utterances (not the narrator's summary), in order."""
        return [u for u in self.utterances if u.role in (LEARNER, TUTOR)]

    def grade_input(self, placement: Placement, *, target_language: str, native_language: str) -> GradeInput:
        """What a grader needs: the placement outcome and this conversation."""
        return GradeInput.from_placement(
            placement,
            target_language=target_language,
            native_language=native_language,
            learner_turns=self.texts(LEARNER),
            tutor_turns=self.texts(TUTOR),
        )
