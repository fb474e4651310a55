"""The teachers' review desk's rules, apart from the admin that shows them: what a rating reads as,
which assessments an "agree with the machine" action may confirm, what the admin history says about a
review change, and the CSV export's rows."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterable, AsyncIterator

from assessments.agreement import agreement_label
from assessments.grading import CRITERIA, criteria_rows
from assessments.grading.consistency import NOT_FROM_TEXT

# Every criterion a grader writes (the text ones and those only heard), so the export's header is the
# same whatever the selection holds.
EXPORT_CRITERIA = (*CRITERIA, *NOT_FROM_TEXT)

FIELD_NAMES = {"teacher_level": "teacher level", "notes": "notes"}

CSV_HEADER = (
    "id", "learner", "email", "language", "machine_level", "teacher_level", "agreement", "status", "partial",
    "grader", *(f"criterion_{c}" for c in EXPORT_CRITERIA), "created_at", "graded_at", "reviewed_at",
    "reviewed_by", "notes",
)


def machine_level(assessment) -> str:
    """The machine's level as a teacher should read it: "at least A1" when placement ended early."""
    if not assessment.level:
        return "not rated"
    return f"at least {assessment.level}" if assessment.partial else assessment.level


def rating_text(assessment) -> str:
    if not assessment.level:
        return "Not rated: too few rated answers for a level."
    if assessment.partial:
        return (f"Partial: at least {assessment.level}. Placement ended before the ceiling "
                "(time cap or the learner left), so the level may be higher.")
    return f"Full: {assessment.level}, the ceiling was found."


def is_reviewed(assessment) -> bool:
    return assessment.reviewed_at is not None or bool(assessment.teacher_level)


# Why the "agree with the machine" action leaves an assessment alone, as its message says it.
LEFT_ALONE = {
    "reviewed": "{n} already reviewed assessment(s) left as the teacher reviewed them.",
    "partial": "{n} partial (\"at least\") assessment(s) left for a teacher's level: the machine's is only a floor.",
    "not_rated": "{n} not rated assessment(s) left for a teacher's level.",
}


def agreement_verdict(assessment) -> str:
    """What the "agree with the machine" action does with `assessment`: "agree", or a LEFT_ALONE key.
    It confirms only a full rating no teacher has reviewed: never overwrites a teacher's judgement,
    and never turns "at least A1" or no level into a teacher's level."""
    if is_reviewed(assessment):
        return "reviewed"
    if not assessment.level:
        return "not_rated"
    return "partial" if assessment.partial else "agree"


def change_message(changes: dict[str, tuple[str, str]]) -> str:
    """The admin history's line for review changes {field: (old, new)}, old and new values quoted."""
    return "Changed " + "; ".join(
        f"{FIELD_NAMES.get(name, name)} from “{old or ''}” to “{new or ''}”" for name, (old, new) in changes.items()
    )


def csv_row(a) -> list:
    levels = {row["key"]: row["level"] or "" for row in criteria_rows(a.criteria or {})}
    return [
        a.pk, a.learner.user.get_username(), a.learner.user.email, a.session.target_language, a.level,
        a.teacher_level, agreement_label(a.level, a.teacher_level) or "", a.status, a.partial, a.grader,
        *(levels.get(c, "") for c in EXPORT_CRITERIA),
        *(d.isoformat() if d else "" for d in (a.created_at, a.graded_at, a.reviewed_at)),
        a.reviewed_by.get_username() if a.reviewed_by else "", a.notes,
    ]


class _Echo:
    """A file-like object whose write returns the line, for csv.writer in a streamed response."""

    def write(self, value):
        return value


async def csv_lines(assessments: AsyncIterable) -> AsyncIterator[str]:
    """The export's lines, one at a time (the header first), for a StreamingHttpResponse. Async: under
    ASGI (Daphne) Django streams an async iterator as it goes, but reads a sync one whole into memory
    first (django.http.response.StreamingHttpResponse.__aiter__)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    async for assessment in assessments:
        yield writer.writerow(csv_row(assessment))
