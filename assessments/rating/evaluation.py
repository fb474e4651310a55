"""How well a rater agrees with teachers on a labelled set: `python manage.py rater_eval FILE.csv`.

A labelled set is CSV with a header: `language`, `level` (the teacher's CEFR level of the text),
`text`, and optionally `question` (the task the text answers; the model rater is given it, the
offline rule checks the text does not merely repeat it). A text's level by the rater is the highest
level at which it judges the text sustained, climbing from A1 as placement does and stopping at the
first level it is not (so a model rater is asked at most one level above the text's). A text
sustained at no level is A1 when it broke down there, and counted apart when it was not ratable.

The figures are assessments.agreement's: exact, within one, quadratic weighted kappa and the
confusion matrix. The teachers' desk writes reviewed answers in this format (assessments.exports).
"""

from __future__ import annotations

import asyncio
import csv
import io
from dataclasses import dataclass

from assessments.agreement import Agreement, agreement
from assessments.cefr import LEVELS
from assessments.languages import language_name
from assessments.placement import SUSTAINED
from assessments.rating.types import NOT_RATABLE, WRITTEN, Answer, Rater

COLUMNS = ("language", "level", "text", "question")
REQUIRED = COLUMNS[:3]
CONCURRENCY = 4  # texts rated at once (a model rater's requests)


class LabelledSetError(ValueError):
    """The file is not a labelled set; the message says where and why."""


@dataclass(frozen=True)
class Labelled:
    row: int  # line in the file (the header is line 1)
    language: str
    level: str
    text: str
    question: str = ""


def read_labelled(source: io.TextIOBase) -> list[Labelled]:
    """The rows of a labelled set; LabelledSetError naming the line of the first bad one."""
    reader = csv.DictReader(source)
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or ())]
    if missing:
        raise LabelledSetError(f"the header lacks {', '.join(missing)} (expected columns: {', '.join(COLUMNS)})")
    rows = []
    for line, row in enumerate(reader, start=2):
        language = (row.get("language") or "").strip().lower()
        level = (row.get("level") or "").strip().upper()
        text = (row.get("text") or "").strip()
        try:
            language_name(language)
        except ValueError:
            raise LabelledSetError(f"line {line}: language {language!r} is not a language code such as es") from None
        if level not in LEVELS:
            raise LabelledSetError(f"line {line}: level {level!r} is not one of {', '.join(LEVELS)}")
        if not text:
            raise LabelledSetError(f"line {line}: no text")
        rows.append(Labelled(line, language, level, text, (row.get("question") or "").strip()))
    if not rows:
        raise LabelledSetError("no rows under the header")
    return rows


async def rated_level(rater: Rater, item: Labelled) -> str | None:
    """The highest level at which `rater` judges the text sustained (A1 if it broke down there; None
    if it was not ratable)."""
    reached = None
    for level in LEVELS:
        judgement = await rater.rate(Answer(item.language, level, item.question, WRITTEN, item.text, True))
        if judgement.outcome != SUSTAINED:
            if reached is None and judgement.outcome == NOT_RATABLE:
                return None
            break
        reached = level
    return reached or LEVELS[0]


@dataclass(frozen=True)
class Evaluation:
    rater: str
    rows: int
    not_ratable: tuple[int, ...]  # lines of the texts the rater could not rate
    figures: Agreement  # over the rated texts: (rater level, teacher level)


async def evaluate(rater: Rater, items: list[Labelled]) -> Evaluation:
    for language in sorted({i.language for i in items}):
        await rater.prepare(language)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(item):
        async with gate:
            return await rated_level(rater, item)

    levels = await asyncio.gather(*(one(i) for i in items))
    pairs = [(level, item.level) for level, item in zip(levels, items) if level is not None]
    skipped = tuple(item.row for level, item in zip(levels, items) if level is None)
    return Evaluation(rater.name, len(items), skipped, agreement(pairs))


def report(result: Evaluation) -> str:
    """What `rater_eval` prints."""
    f = result.figures
    lines = [f"rater {result.rater}: {result.rows} texts, {f.count} rated"]
    if result.not_ratable:
        lines.append(f"not ratable: {len(result.not_ratable)} (lines {', '.join(map(str, result.not_ratable))})")
    if f.count:
        lines += [
            f"exact {f.exact:.1%}".replace("%", " %"),
            f"within one {f.adjacent:.1%}".replace("%", " %"),
            f"kappa {f.kappa:.3f}" if f.kappa is not None else "kappa undefined (one level only on both sides)",
            "",
            "confusion matrix (rows: rater, columns: teachers)",
            "      " + " ".join(f"{level:>4}" for level in LEVELS),
            *(f"{LEVELS[i]:<5} " + " ".join(f"{n:>4}" for n in row) for i, row in enumerate(f.matrix)),
        ]
    return "\n".join(lines)
