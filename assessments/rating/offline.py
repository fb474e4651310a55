"""The offline rater: judges an answer only by what can honestly be measured without a model (pure).

- **Written answers**: a score from measures of the text in the target language, about the CEFR level
  index (A1 = 0) that trained raters gave learner texts like it, and a cut per level. The measures, their
  weights and the cuts were derived from rated learner texts (MERLIN German, training part), not set by
  hand: `python -m assessments.rating.derive DATASETS` reproduces them and measures them on the held-out
  part and on MERLIN's Italian and Czech (README, "The rater"). The measures: length (ln of the words),
  mean word length, the share of words not in `wordfreq`'s list of the language (misspelt or invented),
  and the number of distinct connectors and subordinators (the CEFR coherence scale moves from "and,
  but, because" at A2 to "a varied range of cohesive devices" at C1). A text mostly not in the target
  language, or one that only repeats the question's words, is `not_ratable`. Written answers are rated
  as written: they say nothing of spoken fluency.
- **Spoken answers** with words from a recognizer are rated by their words, as written ones. Without
  words (demo mode has no speech recognizer) an answer gets no level judgement (`not_ratable`: timing
  cannot show what was said), only its fluency (assessments.fluency): phonation time, mean length of
  run and the share of the answer spent speaking, against per-level minimums (`fluency_level`, for
  the card's fluency criterion and nothing else). Their direction follows the CEFR spoken fluency scale
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
import math
import re
import threading
import time
from dataclasses import dataclass

from assessments.cefr import LEVELS, level_index
from assessments.fluency import FluencyMeasures
from assessments.languages import LANGUAGES, language_name
from assessments.quotes import quote
from assessments.rating.types import BREAKDOWN, NOT_RATABLE, SPOKEN, SUSTAINED, Answer, Judgement, Rater

logger = logging.getLogger(__name__)

RARE_ZIPF = 3.5
MIN_TARGET_SHARE = 0.5  # fewer of the words in the target language than this: not ratable
MIN_SPEECH_MS = 300  # less voice than this is no answer
ECHO_MIN_WORDS, ECHO_LONG_WORDS, ECHO_SHARE = 3, 6, 0.8  # repeats_task: the question's words are no answer

# The written rule: a score, about the CEFR level index (A1 = 0) that trained raters gave learner texts
# like it, and a cut per level. Derived from the MERLIN German texts' training part by
# `python -m assessments.rating.derive DATASETS` (README, "The rater"), which prints these numbers
# and the held-out figures; never tuned on the held-out part, nor on MERLIN's Italian and Czech.
WRITTEN_INTERCEPT = -4.526
WRITTEN_WEIGHTS: dict[str, float] = {
    "log_words": 0.887,  # ln(words + 1): longer texts, higher levels (the strongest single measure)
    "words_per_sentence": 0.0,  # measured, shown, but cross-validation left it out of the rule
    "letters_per_word": 0.475,  # longer words: more specific, less basic vocabulary
    "unknown_word_share": -4.060,  # words not in the language's word list: misspellings, invented words
    "connectors": 0.044,  # distinct connectors and subordinators
}
WORDS_PER_SENTENCE_CAP = 30.0  # a text without full stops is not one long sentence
# MERLIN German has no C2 text: the C2 cut is extrapolated (C1 plus the mean step between cuts), untested.
WRITTEN_CUTS: dict[str, float] = {"A2": 0.688, "B1": 1.442, "B2": 2.523, "C1": 3.649, "C2": 4.636}

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
    rare_share: float  # share of words rarer than RARE_ZIPF (shown to teachers; not part of the rule)
    connectors: int  # distinct connectors and subordinators
    sentences: int = 1
    letters_per_word: float = 0.0  # mean word length in letters
    unknown_share: float = 0.0  # share of words not in the language's word list (misspelt or invented)

    @property
    def words_per_sentence(self) -> float:
        return self.words / max(self.sentences, 1)

    def as_dict(self) -> dict:
        return {
            "words": self.words,
            "sentences": self.sentences,
            "words_per_sentence": round(self.words_per_sentence, 1),
            "letters_per_word": round(self.letters_per_word, 2),
            "unknown_word_share": round(self.unknown_share, 3),
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


_SENTENCE_END = re.compile(r"[.!?;:\u2026]+(?=\s|$)")


def text_features(text: str, language: str, connectors: tuple[str, ...] | None = None) -> TextFeatures:
    """The measures of a written text (`connectors`: the list to count, by default the language's)."""
    warm(language)
    wf = _wordfreq()
    tokens = [t for t in wf.tokenize(text, language) if not t.isdigit()]
    if not tokens:
        return TextFeatures(0, 0.0, None, 0.0, 0, 0)
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
    lowered = " " + " ".join(re.findall(r"[\w']+", text.lower().replace("\u2019", "'"))) + " "
    listed = CONNECTORS.get(language, ()) if connectors is None else connectors
    markers = {m for m in listed if f" {m} " in lowered}
    # A sentence ends at . ! ? ; : or an ellipsis; a text without any is one sentence.
    stripped = text.strip()
    sentences = len(_SENTENCE_END.findall(stripped)) + (0 if _SENTENCE_END.search(stripped[-1:]) else 1)
    return TextFeatures(
        words=len(tokens),
        target_share=known if other is None else min(known, 0.49),
        other_language=other,
        rare_share=sum(0 < z < RARE_ZIPF for z in zipf) / len(tokens),
        connectors=len(markers),
        sentences=sentences,
        letters_per_word=sum(len(t) for t in tokens) / len(tokens),
        unknown_share=1 - known,
    )


def written_measures(features: TextFeatures) -> dict[str, float]:
    """The measures the written rule weighs, as it weighs them."""
    return {
        "log_words": math.log(features.words + 1),
        "words_per_sentence": min(features.words_per_sentence, WORDS_PER_SENTENCE_CAP),
        "letters_per_word": features.letters_per_word,
        "unknown_word_share": features.unknown_share,
        "connectors": features.connectors,
    }


def written_terms(features: TextFeatures) -> dict[str, float]:
    """Each measure's part of the written score (its weight times the measure)."""
    values = written_measures(features)
    return {name: WRITTEN_WEIGHTS[name] * values[name] for name in WRITTEN_WEIGHTS}


def written_score(features: TextFeatures) -> float:
    """The written rule's score: about the level index (A1 = 0) a MERLIN rater would give the text."""
    return WRITTEN_INTERCEPT + sum(written_terms(features).values())


def written_level(features: TextFeatures) -> str | None:
    """The highest level whose cut the text's score reaches (A1 for any text; None: no words)."""
    if features.words == 0:
        return None
    score = written_score(features)
    met = LEVELS[0]
    for level in LEVELS[1:]:
        if score >= WRITTEN_CUTS[level]:
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


def repeats_task(text: str, task: str, language: str) -> bool:
    """The relevance check an offline rule can explain: an answer of at least ECHO_MIN_WORDS words made
    only of the task's own words, or of at least ECHO_LONG_WORDS words of which at least ECHO_SHARE are
    the task's, repeats the question instead of answering it ("Me gusta el té" to "¿Te gusta el café o
    el té?" is an answer: "me" is not the question's). Whether other words address the question takes
    understanding them: the model rater, given the task, judges that."""
    if not task.strip():
        return False
    wf = _wordfreq()
    words = [t for t in wf.tokenize(text, language) if not t.isdigit()]
    if len(words) < ECHO_MIN_WORDS:
        return False
    asked = set(wf.tokenize(task, language))
    share = sum(w in asked for w in words) / len(words)
    return share == 1.0 or len(words) >= ECHO_LONG_WORDS and share >= ECHO_SHARE


def explain_written(features: TextFeatures) -> str:
    """The measures behind a written estimate, as a teacher reads them."""
    return (
        f"{features.words} words, {features.letters_per_word:.1f} letters a word, "
        f"{features.unknown_share:.0%} words not in the word list, {features.connectors} connectors: "
        f"score {written_score(features):.2f}"
    )


def _rate_written(answer: Answer, rater: str) -> Judgement:
    features = text_features(answer.text, answer.language)
    measures = {**features.as_dict(), "basis": "written text" if answer.mode != SPOKEN else "transcript"}
    if features.words == 0:
        return Judgement(answer.level, NOT_RATABLE, "no words in the answer", rater, answer.mode, measures)
    if features.target_share < MIN_TARGET_SHARE:
        language = language_name(features.other_language) if features.other_language else "another language"
        return Judgement(
            answer.level, NOT_RATABLE, f"written in {language}, not {language_name(answer.language)}: "
            f"{quote(answer.text)}", rater, answer.mode, measures,
        )
    if repeats_task(answer.text, answer.task, answer.language):
        measures["relevance"] = "repeats the question"
        return Judgement(
            answer.level, NOT_RATABLE, f"repeats the question instead of answering it: {quote(answer.text)}",
            rater, answer.mode, measures,
        )
    estimate = written_level(features)
    measures["text_level"] = estimate
    measures["score"] = round(written_score(features), 3)
    shown = "written" if answer.mode != SPOKEN else "spoken, from its transcript"
    evidence = f"{quote(answer.text)} ({explain_written(features)}, {estimate}; {shown})"
    return Judgement(answer.level, _outcome(estimate, answer.level), evidence, rater, answer.mode, measures)


def _rate_spoken(answer: Answer, rater: str) -> Judgement:
    """A spoken answer: by its words when a recognizer gave them, else its fluency and no level.

    Timing shows fluency, not what was said: not whether it answered the task, in which language, with
    what range or accuracy. So a spoken answer without words is `not_ratable` for the level probed (it
    neither sustains nor breaks it); its fluency is measured and kept (`fluency_level`) for the card's
    fluency criterion, the one criterion timing can evidence."""
    if answer.words_known and answer.text.strip():
        return _rate_written(answer, rater)
    fluency = answer.fluency
    measures = {**(fluency.as_dict() if fluency else {}), "basis": "audio only"}
    if fluency is None or fluency.speaking_ms < MIN_SPEECH_MS:
        return Judgement(answer.level, NOT_RATABLE, "no speech in the answer's audio", rater, answer.mode, measures)
    measures["fluency_level"] = spoken_level(fluency)
    evidence = f"spoken answer, {fluency.describe()} (audio only: fluency measured; the words are not known, so no level)"
    return Judgement(answer.level, NOT_RATABLE, evidence, rater, answer.mode, measures)
