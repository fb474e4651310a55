"""Reviewed answers as a labelled set, the format `manage.py rater_eval` reads.

One row per learner answer in words (typed, or heard by a real speech recognizer) of each assessment a
teacher reviewed: `language` (the session's target language), `level` (the teacher's level for the
learner), `text` (the answer), `question` (the tutor's turn before it). A school rates its learners,
exports them, and measures the model rater against its own teachers before trusting it. Answers
without words (spoken in demo mode) have nothing to rate and are left out; so are assessments with no
teacher level.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from assessments.models import Assessment, Turn
from assessments.rating.evaluation import COLUMNS


def reviewed_answer_rows(assessments: Iterable[Assessment]) -> Iterator[dict]:
    for assessment in assessments:
        if not assessment.teacher_level:
            continue
        question = ""
        for turn in assessment.session.turns.order_by("created_at", "pk"):
            if turn.role == Turn.Role.TUTOR:
                question = turn.text
            elif turn.role == Turn.Role.LEARNER and turn.text.strip():
                yield {"language": assessment.session.target_language, "level": assessment.teacher_level,
                       "text": turn.text, "question": question}


def reviewed_answers_csv(assessments: Iterable[Assessment]) -> str:
    """The labelled set of `assessments` (reviewed ones only) as CSV text with a header."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(reviewed_answer_rows(assessments))
    return out.getvalue()
