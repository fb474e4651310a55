"""The offline rater: judges an answer only by what can honestly be measured without a model (pure).

- **Written answers**: features of the text in the target language. Length in words; lexical
  sophistication as the share of words rarer than Zipf 3.5 (about once per 300,000 words) in the
  `wordfreq` frequency lists of that language (the idea of Laufer & Nation's lexical frequency
  profile: the more proficient use more of the less frequent words); and the number of distinct
  connectors and subordinators (the CEFR's coherence and cohesion scale moves from "and, but,
  because" at A2 to "a varied range of cohesive devices" at C1). A text mostly not in the target
  language is `not_ratable`. Written answers are rated as written: they say nothing of spoken fluency.
- **Spoken answers** without words (demo mode has no speech recognizer): only what the audio shows
  (assessments.fluency): phonation time, mean length of run and the share of the answer spent
  speaking, against per-level minimums. Their direction follows the CEFR spoken fluency scale
  (Companion Volume 2020, p. 139: A1 "very short, isolated, mainly pre-packaged utterances, with much
  pausing", B1 "can keep going comprehensibly, even though pausing for grammatical and lexical planning
  and repair is very evident", B2 "stretches of language with a fairly even tempo ... few noticeably
  long pauses", C2 "at length with a natural, effortless, unhesitating flow"), and research finds
  pausing and mean length of run separate the levels up to B2 best (Tavakoli, Nakatsuhara & Hunter
  2020, "Aspects of fluency across assessed levels of speaking proficiency", The Modern Language
  Journal 104(1)). The numbers themselves are Parla's calibration, not a published norm: audio alone
  cannot tell what was said, so it cannot tell C1 from a fluent A2 talking at length.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from dataclasses import dataclass

from assessments.cefr import LEVELS, level_index
from assessments.fluency import FluencyMeasures
from assessments.languages import LANGUAGES, language_name
from assessments.rating.types import BREAKDOWN, NOT_RATABLE, SPOKEN, SUSTAINED, Answer, Judgement, Rater

logger = logging.getLogger(__name__)

RARE_ZIPF = 3.5
MIN_TARGET_SHARE = 0.5  # fewer of the words in the target language than this: not ratable
MIN_SPEECH_MS = 300  # less voice than this is no answer

# Written: (minimum words, minimum distinct connectors, minimum share of rare words) per level.
WRITTEN_MINIMUM: dict[str, tuple[int, int, float]] = {
    "A1": (1, 0, 0.0),
    "A2": (10, 1, 0.0),
    "B1": (22, 2, 0.0),
    "B2": (45, 2, 0.02),
    "C1": (70, 3, 0.07),
    "C2": (85, 3, 0.12),
}

# Spoken: (minimum phonation time ms, minimum mean length of run ms, minimum phonation ratio).
SPOKEN_MINIMUM: dict[str, tuple[int, int, float]] = {
    "A1": (600, 300, 0.25),
    "A2": (1500, 600, 0.40),
    "B1": (3000, 1000, 0.50),
    "B2": (5000, 1500, 0.60),
    "C1": (8000, 2200, 0.70),
    "C2": (12000, 3000, 0.80),
}

# Connectors and subordinators per language, from A2 ("and", "but", "because") up to C-level
# discourse markers. Multi-word markers are matched as phrases.
CONNECTORS: dict[str, tuple[str, ...]] = {
    "es": (
        "y", "pero", "porque", "también", "después", "luego", "entonces", "si", "cuando", "aunque", "mientras",
        "así que", "sin embargo", "por eso", "además", "ya que", "puesto que", "no obstante", "por un lado",
        "por otro", "en cambio", "de modo que", "por consiguiente", "ahora bien", "en primer lugar",
        "a largo plazo", "en mi opinión", "con todo", "de ahí que", "en última instancia", "lejos de", "sino",
        "cabe", "lo cual", "pues",
    ),
    "fr": (
        "et", "mais", "parce que", "aussi", "après", "ensuite", "alors", "si", "quand", "même si", "pendant que",
        "donc", "cependant", "c'est pourquoi", "de plus", "puisque", "néanmoins", "d'un côté", "de l'autre",
        "par contre", "alors que", "bien que", "toutefois", "ainsi", "d'abord", "cela dit", "en définitive",
        "en somme", "loin de", "ce qui", "car", "aussi", "d'ailleurs", "faute de", "dans la mesure où",
    ),
    "it": (
        "e", "ma", "perché", "anche", "dopo", "poi", "allora", "se", "quando", "anche se", "mentre", "quindi",
        "però", "tuttavia", "inoltre", "poiché", "invece", "sebbene", "benché", "dunque", "comunque",
        "d'altra parte", "in primo luogo", "pertanto", "ciononostante", "il che",
    ),
    "de": (
        "und", "aber", "weil", "auch", "dann", "danach", "wenn", "als", "obwohl", "während", "deshalb", "dass",
        "trotzdem", "außerdem", "da", "jedoch", "einerseits", "andererseits", "sondern", "daher", "zudem",
        "folglich", "dennoch", "allerdings", "zwar",
    ),
    "pt": (
        "e", "mas", "porque", "também", "depois", "então", "se", "quando", "embora", "enquanto", "portanto",
        "no entanto", "além disso", "já que", "pois", "contudo", "por um lado", "por outro", "todavia",
        "ou seja", "aliás",
    ),
    "en": (
        "and", "but", "because", "also", "then", "after", "when", "if", "although", "while", "so", "however",
        "therefore", "moreover", "since", "whereas", "nevertheless", "on the one hand", "on the other hand",
        "furthermore", "consequently", "that said", "thus", "even though", "which",
    ),
}


@dataclass(frozen=True)
class TextFeatures:
    words: int
    target_share: float  # share of the words that are words of the target language
    other_language: str | None  # a language the words fit clearly better, if any
    rare_share: float
    connectors: int  # distinct connectors and subordinators

    def as_dict(self) -> dict:
        return {
            "words": self.words,
            "rare_word_share": round(self.rare_share, 3),
            "connectors": self.connectors,
            "target_language_share": round(self.target_share, 3),
        }


def _wordfreq():
    import wordfreq  # loads its word lists on first use; kept out of module import time

    return wordfreq


_warm_lock = threading.Lock()  # one thread loads a language's lists; the others wait for it
_warmed: set[str] = set()


def warm(language: str) -> None:
    """Load the word lists the rater will need for `language` (and the others it compares with), once
    per process. A rating that comes while another thread loads them waits for that load instead of
    starting a second one (wordfreq's caches are not locked: two threads would both load, at twice
    the time and memory, and the answer's judgement would come late)."""
    if language_ready(language):  # the usual case, without the lock: a load in another thread must not block it
        return
    with _warm_lock:
        if language in _warmed:
            return
        wf = _wordfreq()
        wf.zipf_frequency("a", language)
        for code in LANGUAGES:
            wf.zipf_frequency("a", code, wordlist="small")
        _warmed.add(language)


def language_ready(language: str) -> bool:
    """The word lists `warm(language)` loads are loaded."""
    return language in _warmed


def text_features(text: str, language: str) -> TextFeatures:
    warm(language)
    wf = _wordfreq()
    tokens = [t for t in wf.tokenize(text, language) if not t.isdigit()]
    if not tokens:
        return TextFeatures(0, 0.0, None, 0.0, 0)
    zipf = [wf.zipf_frequency(t, language) for t in tokens]
    known = sum(z > 0 for z in zipf) / len(tokens)
    mean_target = sum(zipf) / len(zipf)
    other = None
    for code in LANGUAGES:
        if code == language:
            continue
        # The small lists suffice to tell a language (and load in milliseconds, not a second each).
        mean_other = sum(wf.zipf_frequency(t, code, wordlist="small") for t in tokens) / len(tokens)
        if mean_other > mean_target + 1.0:
            other = code
            break
    lowered = " " + " ".join(re.findall(r"[\w']+", text.lower().replace("’", "'"))) + " "
    markers = {m for m in CONNECTORS.get(language, ()) if f" {m} " in lowered}
    return TextFeatures(
        words=len(tokens),
        target_share=known if other is None else min(known, 0.49),
        other_language=other,
        rare_share=sum(z < RARE_ZIPF for z in zipf) / len(tokens),
        connectors=len(markers),
    )


def written_level(features: TextFeatures) -> str | None:
    """The highest level whose written minimums the text meets (None: not even A1)."""
    met = None
    for level in LEVELS:
        words, connectors, rare = WRITTEN_MINIMUM[level]
        if features.words >= words and features.connectors >= connectors and features.rare_share >= rare:
            met = level
        else:
            break
    return met


def spoken_level(fluency: FluencyMeasures) -> str | None:
    """The highest level whose spoken minimums the audio meets (None: not even A1)."""
    met = None
    for level in LEVELS:
        speaking, run, ratio = SPOKEN_MINIMUM[level]
        if fluency.speaking_ms >= speaking and fluency.mean_run_ms >= run and fluency.phonation_ratio >= ratio:
            met = level
        else:
            break
    return met


def quote(text: str, limit: int = 160) -> str:
    """The learner's own words, shortened at a word boundary."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return f"\u201c{text}\u201d"
    return f"\u201c{text[:limit].rsplit(' ', 1)[0]}\u2026\u201d"


INLINE_TEXT_CHARS = 500  # OfflineRater.rate: up to this much text, rated on the event loop


class OfflineRater(Rater):
    """Rates written answers by their text and spoken answers by their audio; no model, no network."""

    name = "offline"

    async def prepare(self, language: str) -> None:
        # Loaded once per process (wordfreq caches them): about 60 MiB and 0.2 s for the first session
        # in a language (its large list and every language's small list), nothing after.
        started = time.monotonic()
        await asyncio.to_thread(warm, language)
        logger.info(
            "rater word lists ready", extra={"language": language, "ms": round((time.monotonic() - started) * 1000)}
        )

    async def rate(self, answer: Answer) -> Judgement:
        # With the language's word lists loaded (prepare() loads them when a session starts) a spoken
        # answer or a short written one is rated in under half a millisecond (about 1 us a character
        # of text, measured), less than a thread hop, whose hand-offs of the GIL stall the event loop
        # that relays every learner's audio (issue 14). In a thread: a longer text (typed fragments
        # merge, 2,000 characters each), and the first answer in a language, which loads wordfreq's
        # list for it (about a second).
        if language_ready(answer.language) and len(answer.text) <= INLINE_TEXT_CHARS:
            return rate_offline(answer)
        return await asyncio.to_thread(rate_offline, answer)


def rate_offline(answer: Answer, rater: str = "offline") -> Judgement:
    """The offline judgement of `answer` (synchronous; `rater` labels fallbacks)."""
    if answer.mode == SPOKEN:
        return _rate_spoken(answer, rater)
    return _rate_written(answer, rater)


def _outcome(estimate: str | None, probed: str) -> str:
    return SUSTAINED if estimate is not None and level_index(estimate) >= level_index(probed) else BREAKDOWN


def _rate_written(answer: Answer, rater: str) -> Judgement:
    features = text_features(answer.text, answer.language)
    measures = {**features.as_dict(), "basis": "written text"}
    if features.words == 0:
        return Judgement(answer.level, NOT_RATABLE, "no words in the answer", rater, answer.mode, measures)
    if features.target_share < MIN_TARGET_SHARE:
        language = language_name(features.other_language) if features.other_language else "another language"
        return Judgement(
            answer.level, NOT_RATABLE, f"written in {language}, not {language_name(answer.language)}: "
            f"{quote(answer.text)}", rater, answer.mode, measures,
        )
    estimate = written_level(features)
    measures["text_level"] = estimate
    evidence = (
        f"{quote(answer.text)} ({features.words} words, {features.connectors} connectors, "
        f"{features.rare_share:.0%} less frequent words; written)"
    )
    return Judgement(answer.level, _outcome(estimate, answer.level), evidence, rater, answer.mode, measures)


def _rate_spoken(answer: Answer, rater: str) -> Judgement:
    fluency = answer.fluency
    measures = {**(fluency.as_dict() if fluency else {}), "basis": "audio only"}
    if fluency is None or fluency.speaking_ms < MIN_SPEECH_MS:
        return Judgement(answer.level, NOT_RATABLE, "no speech in the answer's audio", rater, answer.mode, measures)
    estimate = spoken_level(fluency)
    measures["fluency_level"] = estimate
    evidence = f"spoken answer, {fluency.describe()} (audio only: the words are not known)"
    return Judgement(answer.level, _outcome(estimate, answer.level), evidence, rater, answer.mode, measures)
