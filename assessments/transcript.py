"""The conversation of a session, in order (pure, no Django).

It is the one source of what was said: the live session appends to it (and stores each utterance as a
`Turn` row), grading reads it, and an expired upstream session is resumed by replaying it. After a
server restart it is rebuilt from the `Turn` rows (`Transcript(rows)`), so every grading path sees
the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from assessments.grading import GradeInput
from assessments.grading.types import Exchange
from assessments.placement import Placement, ProbeRecord
from assessments.text import storable_text

LEARNER, TUTOR, NARRATOR = "learner", "tutor", "narrator"


@dataclass(frozen=True)
class Utterance:
    """One turn. A learner's is one answer (fragments merged); its `text` holds only words the learner
    typed or a recognizer heard, and is empty for a spoken answer whose words are not known."""

    role: str  # learner | tutor | narrator
    text: str
    item_id: str = ""
    level: str = ""  # the placement level when it was said
    mode: str = ""  # learner answers: spoken | written
    fluency: dict = field(default_factory=dict, compare=False, hash=False)  # spoken answers' measures


class Transcript:
    def __init__(self, utterances: Iterable[Utterance] = ()):
        self.utterances: list[Utterance] = list(utterances)
        self.judgements: dict[int, ProbeRecord] = {}  # index of a learner utterance -> its judgement

    def judge(self, judgement: ProbeRecord) -> bool:
        """Put `judgement` beside the answer it judges: the latest learner utterance after the last
        judged one. False (kept with the placement only) when every answer already has one."""
        last_judged = max(self.judgements, default=-1)
        for i in range(len(self.utterances) - 1, last_judged, -1):
            if self.utterances[i].role == LEARNER:
                self.judgements[i] = judgement
                return True
        return False

    def add(self, role: str, text: str | None, item_id: str = "", level: str = "") -> Utterance | None:
        """Append what `role` said; None (and nothing appended) when there are no words."""
        text = storable_text(text or "").strip()
        if not text:
            return None
        utterance = Utterance(role, text, item_id, level)
        self.utterances.append(utterance)
        return utterance

    def set_answer(
        self, answer_id: str, text: str, level: str, mode: str, fluency: dict | None = None
    ) -> Utterance | None:
        """The learner's answer `answer_id`, new or grown by a fragment (one utterance per answer).

        A spoken answer may have no words (`text` empty); None only when there is neither text nor a
        spoken mode.
        """
        text = storable_text(text or "").strip()
        if not text and mode != "spoken":
            return None
        for i, u in enumerate(self.utterances):
            if u.role == LEARNER and u.item_id == answer_id:
                self.utterances[i] = replace(u, text=text, mode=mode, fluency=dict(fluency or u.fluency))
                return self.utterances[i]
        utterance = Utterance(LEARNER, text, answer_id, level, mode, dict(fluency or {}))
        self.utterances.append(utterance)
        return utterance

    def texts(self, role: str) -> tuple[str, ...]:
        """What `role` said, in words (spoken answers without words are left out)."""
        return tuple(u.text for u in self.utterances if u.role == role and u.text)

    def answer_measures(self) -> tuple[dict, ...]:
        """Per learner answer, in order: how it was given and what its audio showed (for the grader)."""
        return tuple(
            {"mode": u.mode or "spoken", "words_known": bool(u.text), "fluency": u.fluency}
            for u in self.utterances
            if u.role == LEARNER
        )

    @property
    def conversation(self) -> list[Utterance]:
        """The learner's and the tutor's utterances (not the narrator's summary), in order."""
        return [u for u in self.utterances if u.role in (LEARNER, TUTOR)]

    def exchanges(self) -> tuple[Exchange, ...]:
        """The conversation in order, each learner answer with its judgement beside it."""
        return tuple(
            Exchange(u.role, u.text, self.judgements.get(i))
            for i, u in enumerate(self.utterances)
            if u.role in (LEARNER, TUTOR)
        )

    def grade_input(
        self, placement: Placement, *, target_language: str, native_language: str, feedback_language: str = "en"
    ) -> GradeInput:
        """What a grader needs: the placement outcome and this conversation, in order."""
        return GradeInput.from_placement(
            placement,
            target_language=target_language,
            native_language=native_language,
            learner_turns=self.texts(LEARNER),
            tutor_turns=self.texts(TUTOR),
            answer_measures=self.answer_measures(),
            conversation=self.exchanges(),
            feedback_language=feedback_language,
        )
