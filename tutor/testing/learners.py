"""Simulated learners of a true CEFR level, as tests need them: answers that carry the level.

The offline rater places by the text of written answers and measures only the fluency of spoken ones
without words (assessments.rating.offline: timing places nobody), so a learner stand-in of level X
*writes* like X to be placed, and *sounds* like X for the fluency measures:
- `spoken_answer(level)`: PCM16 24 kHz voiced runs and silent pauses with the fluency profile of the
  level (phonation time, mean length of run and phonation ratio half-way between the level's minimums
  and the next level's), then enough silence for any turn detection Parla uses to end the turn;
- `written_answer(level, language)`: a text from the rater's own reference set (assessments/rating/data)
  that the offline rater places at that level: the level's answers, as many joined as it takes. The
  written rule is derived from rated learner letters (MERLIN), where length counts: an A2 stand-in
  writes about 45 words, a B1 one 60, a B2 one 110. C1 and C2 are beyond what the rule sees in one answer
  (some 560 and 1,700 words; an answer holds at most 2,000 characters), so they have no written
  stand-in (`WRITTEN_LEVELS`): in demo mode nobody is placed there by writing.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np

from assessments.cefr import LEVELS, level_index
from assessments.rating.offline import SPOKEN_MINIMUM, text_features, written_level
from tutor.realtime.audio import SAMPLE_RATE
from tutor.realtime.wire import MAX_TEXT_ANSWER_CHARS

DATA = Path(__file__).resolve().parents[2] / "assessments" / "rating" / "data"
TRAILING_SILENCE_MS = 2300  # longer than every turn detection's silence (1200 ms; semantic low: 2000 ms)
FRAME_BYTES = 4800  # 100 ms, as the page sends


def tone(ms: int, f0: float = 170.0) -> np.ndarray:
    t = np.arange(SAMPLE_RATE * ms // 1000) / SAMPLE_RATE
    return (0.45 * np.sin(2 * np.pi * f0 * t) + 0.25 * np.sin(2 * np.pi * 2 * f0 * t)) * 22000


def profile(level: str) -> tuple[int, int, int]:
    """(runs, run ms, pause ms) of an answer at `level`."""
    i = level_index(level)
    low = SPOKEN_MINIMUM[level]
    high = SPOKEN_MINIMUM[LEVELS[i + 1]] if i + 1 < len(LEVELS) else tuple(v * 1.3 for v in low)
    speaking, run, ratio = ((a + b) / 2 for a, b in zip(low, high))
    ratio = min(ratio, 0.95)
    runs = max(1, round(speaking / run))
    run_ms = int(speaking / runs)
    pause_ms = int(run_ms * (1 - ratio) / ratio)
    return runs, run_ms, pause_ms


def spoken_answer(level: str, pauses_ms: list[int] | None = None) -> bytes:
    """One spoken answer with the fluency of `level` (or explicit `pauses_ms` between its runs)."""
    runs, run_ms, pause_ms = profile(level)
    gaps = pauses_ms if pauses_ms is not None else [pause_ms] * (runs - 1)
    parts = [tone(run_ms)]
    for gap in gaps:
        parts += [np.zeros(SAMPLE_RATE * gap // 1000), tone(run_ms)]
    parts.append(np.zeros(SAMPLE_RATE * TRAILING_SILENCE_MS // 1000))
    return np.concatenate(parts).astype("<i2").tobytes()


def frames(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


@cache
def reference_answers(language: str) -> tuple[dict, ...]:
    return tuple(json.loads((DATA / f"{language}.json").read_text())["answers"])


WRITTEN_LEVELS = ("A1", "A2", "B1", "B2")  # the levels a written stand-in can show (see the docstring)


@cache
def written_answer(level: str, language: str = "es") -> str:
    """The fewest of the reference answers of `level`, joined, that the offline rater places at `level`."""
    texts = [a["text"] for a in reference_answers(language) if a["level"] == level]
    for n in range(1, len(texts) + 1):
        text = " ".join(texts[:n])
        if len(text) > MAX_TEXT_ANSWER_CHARS:
            break
        if written_level(text_features(text, language)) == level:
            return text
    raise LookupError(f"no {language} reference answer placed at {level} within {MAX_TEXT_ANSWER_CHARS} characters")
