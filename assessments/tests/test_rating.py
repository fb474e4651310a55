"""The offline rater and the fluency measures (pure): what they can know, and what they cannot."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assessments.cefr import LEVELS, level_index
from assessments.fluency import MIN_RUN_MS, PAUSE_MS, analyse, measure, speech_span
from assessments.placement import Placement
from assessments.rating import Answer, OfflineRater, rate_offline
from assessments.rating import derive, offline, openai_rater
from assessments.rating.offline import text_features, warm, written_level
from assessments.rating.openai_rater import AnswerJudgement, OpenAIRater, rater_prompt

DATA = Path(__file__).resolve().parents[1] / "rating" / "data"
RATE = 24_000


def tone(ms):
    t = np.arange(RATE * ms // 1000) / RATE
    return 0.5 * np.sin(2 * np.pi * 180 * t) * 20000


def pcm(*parts):
    """("v", ms) voiced, ("s", ms) silent -> PCM16 bytes."""
    return np.concatenate([tone(ms) if kind == "v" else np.zeros(RATE * ms // 1000) for kind, ms in parts]).astype(
        "<i2"
    ).tobytes()


# --- fluency --------------------------------------------------------------------------------------


def test_fluency_counts_runs_and_pauses_between_first_and_last_voice():
    audio = pcm(("s", 800), ("v", 1000), ("s", 600), ("v", 500), ("s", 1200), ("v", 1500), ("s", 2000))
    m = measure(audio)
    assert (m.duration_ms, m.speaking_ms, m.runs, m.pauses) == (4800, 3000, 3, 2)
    assert (m.longest_pause_ms, m.mean_pause_ms, m.mean_run_ms, m.phonation_ratio) == (1200, 900, 1000, 0.625)
    assert m.words_per_minute is None and "words" not in m.as_dict()  # no words: no speech rate


def test_gaps_shorter_than_a_pause_are_speech_and_words_give_a_rate():
    m = measure(pcm(("v", 1000), ("s", PAUSE_MS - 50), ("v", 1000)), words=10)
    assert (m.runs, m.pauses, m.speaking_ms) == (1, 0, 2200)
    assert m.words_per_minute == round(10 * 60_000 / 2200, 1)


def test_silence_is_no_speech_and_noise_does_not_count_as_voice():
    assert measure(pcm(("s", 3000))).silent
    rng = np.random.default_rng(1)
    hiss = (rng.normal(0, 60, RATE * 2)).astype("<i2").tobytes()  # about -55 dBFS
    assert measure(hiss).silent
    voice_in_hiss = measure(hiss + pcm(("v", 700)) + hiss)
    assert voice_in_hiss.runs == 1 and 650 <= voice_in_hiss.speaking_ms <= 750


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("vs"), st.integers(1, 60).map(lambda n: n * 10)), max_size=14))
def test_fluency_follows_its_definition_for_any_pattern_of_voice_and_silence(parts):
    """The measures by their definition, stretch by stretch (voice under MIN_RUN_MS is silence, the
    silence around the answer is not part of it, gaps under PAUSE_MS are speech), against `measure`."""
    def merged(pieces):
        out: list[list] = []
        for voice, ms in pieces:
            if out and out[-1][0] == voice:
                out[-1][1] += ms
            else:
                out.append([voice, ms])
        return out

    heard = merged((kind == "v", ms) for kind, ms in parts)
    stretches = merged((voice and ms >= MIN_RUN_MS, ms) for voice, ms in heard)
    while stretches and not stretches[0][0]:
        stretches.pop(0)
    while stretches and not stretches[-1][0]:
        stretches.pop()
    m = measure(pcm(*parts) if parts else b"")
    if not stretches:
        assert m.silent and m.duration_ms == 0
        return
    pauses = [ms for voice, ms in stretches if not voice and ms >= PAUSE_MS]
    duration = sum(ms for _v, ms in stretches)
    assert (m.duration_ms, m.pauses, m.runs) == (duration, len(pauses), len(pauses) + 1)
    assert m.speaking_ms == duration - sum(pauses) and m.longest_pause_ms == max(pauses, default=0)
    assert m.mean_run_ms == round((duration - sum(pauses)) / (len(pauses) + 1))


def test_speech_span_keeps_the_answer_not_the_silence_around_it():
    audio = pcm(("s", 3000), ("v", 500), ("s", 3000))
    kept = speech_span(audio, pad_ms=300)
    assert len(kept) == (500 + 600) * 48
    assert speech_span(pcm(("s", 1000))) == b""


def test_analyse_is_measure_and_speech_span_in_one_pass():
    audio = pcm(("s", 1000), ("v", 800), ("s", 700), ("v", 600), ("s", 1200))
    assert analyse(audio, pad_ms=200) == (measure(audio), speech_span(audio, pad_ms=200))
    assert analyse(pcm(("s", 1000))) == (measure(pcm(("s", 1000))), b"")


# --- the offline rater: written answers -------------------------------------------------------------


def reference_set():
    for path in sorted(DATA.glob("*.json")):
        data = json.loads(path.read_text())
        assert data["source"]  # where the set comes from is part of it
        for answer in data["answers"]:
            yield data["language"], answer


def test_the_reference_set_covers_every_level_in_at_least_two_languages():
    seen = Counter((language, a["level"]) for language, a in reference_set())
    languages = {language for language, _ in seen}
    assert len(languages) >= 2
    assert all(seen[(language, level)] >= 3 for language in languages for level in LEVELS)


def test_the_written_rule_beats_both_baselines_on_the_held_out_merlin_texts():
    """The written rule was derived from rated learner texts (MERLIN German, training part) by
    assessments.rating.derive; here it is measured on the held-out 30 % (their measures, committed:
    no words of the texts), beside the two baselines fit on the training part. Measured: exact 64.4 %,
    within one 100 %, kappa 0.809; length alone 63.1 %, 99.7 %, 0.804; always B1 30.9 %, kappa 0."""
    rows = derive.read_measures()
    train = [t for part, t in rows if part == "training"]
    test = [t for part, t in rows if part == "held_out"]
    assert len(train) + len(test) == 1029 and all(derive.held_out(t.name) for t in test)
    assert not any(derive.held_out(t.name) for t in train)
    truth = [t.level for t in test]
    majority, length_cuts = derive.baselines(train)
    rule = derive.figures(derive.shipped_levels(test), truth)
    always = derive.figures([majority] * len(test), truth)
    length = derive.figures(derive.predict(derive.word_counts(test), length_cuts), truth)
    assert rule[0] > always[0] and rule[0] > length[0], (rule, always, length)  # exact agreement
    assert rule[2] > always[2] and rule[2] > length[2], (rule, always, length)  # quadratic weighted kappa
    assert rule[1] >= 0.95  # within one level


MERLIN = Path(os.environ.get("PARLA_MERLIN_DATASETS", "/work/merlin/Datasets"))


@pytest.mark.skipif(not (MERLIN / "DE").is_dir(), reason="the MERLIN corpus is not here (README: where to get it)")
def test_the_committed_measures_are_those_of_the_merlin_texts():
    """The measures the test above reads are what text_features gives for the corpus's texts today."""
    committed = {t.name: (part, t) for part, t in derive.read_measures()}
    texts = derive.load(MERLIN, "DE")
    assert len(texts) == len(committed)
    for text in texts:
        part, saved = committed[text.name]
        assert part == ("held_out" if derive.held_out(text.name) else "training")
        assert saved.level == text.level
        f, g = text.features, saved.features
        assert (f.words, f.sentences, f.connectors) == (g.words, g.sentences, g.connectors), text.name
        assert abs(f.letters_per_word - g.letters_per_word) < 1e-3 and abs(f.unknown_share - g.unknown_share) < 1e-3


def test_the_written_rule_orders_parlas_own_texts_by_level_and_places_them_lower():
    """Parla's own set (written by its developers to the CEFR descriptors, short chat answers) was what
    the old thresholds were fit to (35 of 36 exact). The rule derived from rated learner letters, where
    a level goes with length, places these short texts one or two levels lower: that assertion no
    longer holds and is gone (the held-out measurement above replaces it). What still holds, and is
    asserted: higher levels score higher on average, and no text is placed above its level."""
    results = []
    for language, answer in reference_set():
        features = text_features(answer["text"], language)
        results.append((answer["level"], written_level(features), offline.written_score(features)))
    means = [np.mean([score for level, _e, score in results if level == target]) for target in LEVELS]
    assert means == sorted(means)
    assert all(level_index(estimate) <= level_index(level) for level, estimate, _s in results)


def test_a_written_answer_is_judged_at_the_level_probed_with_a_quote_and_its_measures():
    text = json.loads((DATA / "es.json").read_text())["answers"][6]["text"]  # a B1 answer, 31 words: A2
    sustained = rate_offline(Answer("es", "A2", "¿Qué harías...?", "written", text, True))
    above = rate_offline(Answer("es", "B1", "...", "written", text, True))
    assert (sustained.outcome, above.outcome) == ("sustained", "breakdown")
    assert sustained.evidence.startswith("\u201cSi ganara un viaje") and "written" in sustained.evidence
    assert "31 words" in sustained.evidence and "score 0.7" in sustained.evidence
    assert sustained.evidence.count("\u201c") == 1  # one pair of quotation marks
    assert sustained.rater == "offline" and sustained.mode == "written"
    assert sustained.measures["basis"] == "written text" and sustained.measures["text_level"] == "A2"


def test_an_answer_that_repeats_the_question_is_not_ratable_and_says_why():
    task = "¿Qué hiciste el fin de semana pasado con tus amigos?"
    echo = rate_offline(Answer("es", "A1", task, "written", "Qué hiciste el fin de semana pasado", True))
    assert echo.outcome == "not_ratable" and echo.evidence.startswith("repeats the question")
    assert echo.measures["relevance"] == "repeats the question"
    answer = rate_offline(Answer("es", "A1", task, "written", "El sábado fui al parque con mis amigos.", True))
    assert answer.outcome == "sustained"  # sharing a few of the question's words is answering it
    tea = rate_offline(Answer("es", "A1", "¿Te gusta el café o el té?", "written", "Me gusta el té", True))
    assert tea.outcome == "sustained"  # three of its four words are the question's: still an answer
    long_echo = "Qué hiciste el fin de semana pasado con tus amigos pues"
    assert rate_offline(Answer("es", "A1", task, "written", long_echo, True)).outcome == "not_ratable"
    placement = Placement()
    for _ in range(3):
        placement.record(echo.level, echo.outcome, echo.evidence, echo.rater)
    assert placement.floor is None and placement.rated_answers == 0  # it never sustains a level


def test_rating_a_typical_answer_takes_well_under_a_millisecond():
    """The rule runs on the event loop: measured here, the best of 200 ratings of a 60-word answer."""
    warm("es")
    answer = Answer("es", "B1", "¿Qué harías si ganaras un viaje?", "written", written_text(60), True)
    best = min(_timed(lambda: rate_offline(answer)) for _ in range(200))
    assert best < 0.001, best


def written_text(words: int) -> str:
    texts = [a["text"] for language, a in reference_set() if language == "es"]
    return " ".join(" ".join(texts).split()[:words])


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


@pytest.mark.parametrize(
    "text, language",
    [("I like pizza and coffee very much because it is good", "es"), ("Me gusta mucho la pizza", "fr"), ("", "es")],
)
def test_another_language_or_nothing_is_not_ratable(text, language):
    judgement = rate_offline(Answer(language, "A1", "", "written", text, bool(text)))
    assert judgement.outcome == "not_ratable"


def test_not_ratable_answers_move_nothing_in_placement():
    placement = Placement()
    placement.record("A1", "not_ratable", "no speech", "offline")
    placement.record("A1", "not_ratable", "no speech", "offline")
    assert placement.ladder()["A1"] == "current" and not placement.finished and len(placement.probes) == 2


# --- the offline rater: spoken answers ---------------------------------------------------------------


def test_a_spoken_answer_without_words_gets_its_fluency_and_no_level():
    """Timing shows fluency, not what was said: no level is sustained or broken by it."""
    halting = measure(pcm(("v", 400), ("s", 1200), ("v", 400), ("s", 1200), ("v", 500)))
    fluent = measure(pcm(*[p for _ in range(5) for p in (("v", 2600), ("s", 400))]))
    for level, fluency, fluency_level in [("A1", halting, "A1"), ("B2", fluent, "C1"), ("A1", fluent, "C1")]:
        judgement = rate_offline(Answer("es", level, "", "spoken", fluency=fluency))
        assert judgement.outcome == "not_ratable", (level, judgement)
        assert "audio only" in judgement.evidence and judgement.measures["basis"] == "audio only"
        assert judgement.measures["fluency_level"] == fluency_level
    silent = rate_offline(Answer("es", "A1", "", "spoken", fluency=measure(pcm(("s", 2000)))))
    assert silent.outcome == "not_ratable"
    # With words from a recognizer (an API key), the words are rated, as a written answer's are.
    heard = rate_offline(Answer("es", "A1", "", "spoken", "Me llamo Ana y vivo en Lima.", True, fluent))
    assert heard.outcome == "sustained" and heard.measures["basis"] == "transcript"


def test_the_model_rater_is_not_asked_without_words_and_falls_back_offline_when_it_fails():
    rater = OpenAIRater(api_key="sk-none", model="m", timeout=2, base_url="http://127.0.0.1:9/v1", max_retries=0)
    spoken = Answer("es", "A1", "", "spoken", fluency=measure(pcm(("v", 900))))
    assert asyncio.run(rater.rate(spoken)).rater == "offline"  # only the audio can be judged
    written = Answer("es", "A1", "¿Cómo te llamas?", "written", "Me llamo Ana.", True)
    judgement = asyncio.run(rater.rate(written))
    assert judgement.rater.startswith("offline (fallback:") and judgement.outcome == "sustained"
    prompt = json.loads(rater_prompt(written))
    assert prompt["learner_words"] == "Me llamo Ana." and prompt["level_probed"] == "A1"
    assert prompt["task"] == "¿Cómo te llamas?"  # the model judges whether the answer addresses it
    assert "not an answer to the task" in openai_rater.RATER_INSTRUCTIONS
    schema = AnswerJudgement.model_json_schema()
    assert set(schema["required"]) == {"outcome", "evidence"} and schema["additionalProperties"] is False
    assert asyncio.run(OfflineRater().rate(written)).rater == "offline"


def test_a_rating_runs_on_the_event_loop_once_its_word_lists_are_loaded_and_in_a_thread_before(monkeypatch):
    """A thread hop costs more than a rating with the lists loaded, and under load its GIL hand-offs
    stall every learner's audio; the first answer in a language must not load them on the loop, and a
    long text (about 1 us a character) is rated in a thread too."""
    written = Answer("es", "A1", "¿Cómo te llamas?", "written", "Me llamo Ana.", True)
    threads = []
    rate = offline.rate_offline
    monkeypatch.setattr(offline, "rate_offline", lambda answer: threads.append(threading.get_ident()) or rate(answer))

    async def rate_twice():
        warm("es")
        assert (await OfflineRater().rate(written)).outcome == "sustained"
        monkeypatch.setattr(offline, "_warmed", set())  # a process that has not loaded the lists yet
        assert (await OfflineRater().rate(written)).outcome == "sustained"
        assert offline.language_ready("es")  # the rating in the thread loaded them
        long = dataclasses.replace(written, text=" ".join(["Me llamo Ana."] * 60))  # typed fragments merged
        assert len(long.text) > offline.INLINE_TEXT_CHARS
        assert (await OfflineRater().rate(long)).level == "A1"
        return threading.get_ident()

    loop_thread = asyncio.run(rate_twice())
    assert threads[0] == loop_thread and threads[1] != loop_thread and threads[2] != loop_thread


def test_a_load_in_progress_does_not_hold_up_a_language_already_loaded():
    warm("es")
    ready = threading.Event()
    with offline._warm_lock:  # another thread is loading some language's lists
        thread = threading.Thread(target=lambda: (warm("es"), ready.set()))
        thread.start()
        assert ready.wait(5)
    thread.join()
