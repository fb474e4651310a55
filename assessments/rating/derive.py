"""Derive the offline written rule from rated learner texts, and measure it on texts it never saw.

    python -m assessments.rating.derive /path/to/UniversalCEFRScoring/Datasets

The corpus is MERLIN (Boyd et al. 2014; CC BY-SA 4.0) as published in the `Datasets/` folder of
https://github.com/nishkalavallabhi/UniversalCEFRScoring (Vajjala & Rama 2018): one text a file,
the file name ending in the overall CEFR level trained raters gave it (`1023_0001416_DE_B2.txt`).
Parla ships none of its texts; this script reads them from the folder given.

What it does, deterministically:
1. Splits the German texts (`DE/`) by a hash of the file name: 30 % held out (`held_out`), never used
   to choose or fit anything; the rest is the training part.
2. Chooses the measures by 5-fold cross-validation on the training part (every subset of
   `CANDIDATES`; the best mean exact agreement, then kappa), fits their weights by least squares on
   the level index (A1 = 0) and a cut per level maximising exact agreement on the training part.
   MERLIN German has no C2 text: the C2 cut is extrapolated (the C1 cut plus the mean step between
   the fitted cuts) and untested.
3. Prints the fitted constants (to copy into `offline.py`), then the figures on the held-out part for
   the rule as shipped in `offline.py` beside two baselines fit on the training part: always the most
   common level, and length alone (cuts on the number of words). Then the same on MERLIN's Italian
   and Czech texts, never looked at while fitting: how the rule carries to other languages.

Pure apart from reading the folder; needs numpy and wordfreq (both in requirements.txt), not Django.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assessments.agreement import agreement
from assessments.cefr import LEVELS
from assessments.rating import offline

HELD_OUT_SHARE = 0.30
FOLDS = 5
CANDIDATES = ("log_words", "words_per_sentence", "letters_per_word", "unknown_word_share", "connectors")
# MERLIN's languages: folder -> wordfreq code. Czech is not a Parla language: for the check only, a
# list of its common connectors and subordinators (from its grammar, not tuned on the texts).
CORPORA = {"DE": "de", "IT": "it", "CZ": "cs"}
CHECK_CONNECTORS = {
    "cs": (
        "a", "ale", "protože", "také", "potom", "pak", "když", "jestli", "pokud", "že", "aby", "proto", "takže",
        "i když", "přestože", "zatímco", "však", "tedy", "kromě toho", "nebo", "ani", "totiž", "navíc", "sice",
    ),
}


@dataclass(frozen=True)
class Text:
    name: str
    level: int  # index in LEVELS
    features: offline.TextFeatures


def held_out(name: str) -> bool:
    """Whether a text is in the held-out part: a fixed 30 % by the SHA-256 of its file name."""
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 1000 < HELD_OUT_SHARE * 1000


def fold(name: str) -> int:
    return int(hashlib.sha256(("fold:" + name).encode()).hexdigest(), 16) % FOLDS


def load(folder: Path, corpus: str) -> list[Text]:
    language = CORPORA[corpus]
    texts = []
    for path in sorted((folder / corpus).glob("*.txt")):
        level = path.stem.rsplit("_", 1)[-1]
        if level not in LEVELS:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        features = offline.text_features(text, language, CHECK_CONNECTORS.get(language))
        texts.append(Text(path.name, LEVELS.index(level), features))
    if not texts:
        raise SystemExit(f"no rated texts in {folder / corpus} (expected files such as 1023_0001416_DE_B2.txt)")
    return texts


MEASURES_CSV = Path(__file__).resolve().parent / "data" / "merlin_de_measures.csv"
MEASURE_COLUMNS = ("words", "sentences", "letters_per_word", "unknown_share", "connectors")


def write_measures(texts: list[Text], path: Path) -> None:
    """The measures of each text, its level and its part (no words of it): what the tests check the
    shipped rule against without the corpus."""
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(("file", "level", "part", *MEASURE_COLUMNS))
        for t in texts:
            f = t.features
            writer.writerow((t.name, LEVELS[t.level], "held_out" if held_out(t.name) else "training", f.words,
                             f.sentences, f"{f.letters_per_word:.4f}", f"{f.unknown_share:.4f}", f.connectors))


def read_measures(path: Path = MEASURES_CSV) -> list[tuple[str, Text]]:
    """(part, text) from a file `write_measures` wrote."""
    rows = []
    with path.open(newline="") as source:
        for row in csv.DictReader(source):
            features = offline.TextFeatures(
                words=int(row["words"]), target_share=1.0, other_language=None, rare_share=0.0,
                connectors=int(row["connectors"]), sentences=int(row["sentences"]),
                letters_per_word=float(row["letters_per_word"]), unknown_share=float(row["unknown_share"]),
            )
            rows.append((row["part"], Text(row["file"], LEVELS.index(row["level"]), features)))
    return rows


def baselines(train: list[Text]) -> tuple[int, list[float]]:
    """The two baselines fit on `train`: the most common level, and the cuts of length alone."""
    levels = [t.level for t in train]
    majority = int(np.bincount(levels).argmax())
    return majority, fit_cuts(word_counts(train), np.array(levels), max(levels) + 1)


def word_counts(texts: list[Text]) -> np.ndarray:
    return np.array([t.features.words for t in texts], dtype=float)


def measures(texts: list[Text], names: tuple[str, ...]) -> np.ndarray:
    """The measures the rule weighs (offline.written_measures), one row a text."""
    return np.array([[offline.written_measures(t.features)[n] for n in names] for t in texts], dtype=float)


def predict(scores: np.ndarray, cuts: list[float]) -> np.ndarray:
    return np.searchsorted(np.asarray(cuts), scores, side="right")


def figures(predicted, truth) -> tuple[float, float, float]:
    a = agreement([(LEVELS[p], LEVELS[t]) for p, t in zip(predicted, truth)])
    return a.exact, a.adjacent, a.kappa if a.kappa is not None else 0.0


def fit_cuts(scores: np.ndarray, truth: np.ndarray, levels: int) -> list[float]:
    """Cuts between the `levels` lowest levels maximising exact agreement (then kappa) on the data:
    coordinate ascent from the cuts that reproduce the level shares, over the scores' quantiles."""
    candidates = np.unique(np.quantile(scores, np.linspace(0, 1, 201)))
    cuts = [float(np.quantile(scores, np.mean(truth < i))) for i in range(1, levels)]

    def objective(c):
        exact, _within, kappa = figures(predict(scores, c), truth)
        return exact, kappa

    best = objective(cuts)
    for _ in range(4):
        improved = False
        for j in range(len(cuts)):
            low = cuts[j - 1] if j else -np.inf
            high = cuts[j + 1] if j + 1 < len(cuts) else np.inf
            for value in candidates[(candidates > low) & (candidates < high)]:
                trial = [*cuts[:j], float(value), *cuts[j + 1:]]
                if (score := objective(trial)) > best:
                    best, cuts, improved = score, trial, True
        if not improved:
            break
    return cuts


@dataclass(frozen=True)
class Rule:
    names: tuple[str, ...]
    intercept: float
    weights: tuple[float, ...]
    cuts: list[float]  # A2.. up to the highest level seen in training

    def scores(self, texts: list[Text]) -> np.ndarray:
        return self.intercept + measures(texts, self.names) @ np.array(self.weights)


def fit(texts: list[Text], names: tuple[str, ...]) -> Rule:
    """Least squares of the level index on the measures, then the cuts."""
    x = measures(texts, names)
    y = np.array([t.level for t in texts], dtype=float)
    design = np.c_[x, np.ones(len(x))]
    solution, *_ = np.linalg.lstsq(design, y, rcond=None)
    weights, intercept = tuple(float(w) for w in solution[:-1]), float(solution[-1])
    scores = intercept + x @ np.array(weights)
    cuts = fit_cuts(scores, y.astype(int), int(y.max()) + 1)
    return Rule(names, intercept, weights, cuts)


def cross_validated(texts: list[Text], names: tuple[str, ...]) -> tuple[float, float]:
    exact, kappa = [], []
    for k in range(FOLDS):
        train = [t for t in texts if fold(t.name) != k]
        test = [t for t in texts if fold(t.name) == k]
        rule = fit(train, names)
        e, _w, kp = figures(predict(rule.scores(test), rule.cuts), [t.level for t in test])
        exact.append(e)
        kappa.append(kp)
    return float(np.mean(exact)), float(np.mean(kappa))


def choose(texts: list[Text]) -> tuple[str, ...]:
    """The subset of CANDIDATES with the best cross-validated exact agreement (then kappa)."""
    subsets = [s for r in range(1, len(CANDIDATES) + 1) for s in itertools.combinations(CANDIDATES, r)]
    return max(subsets, key=lambda s: cross_validated(texts, s))


def shipped_levels(texts: list[Text]) -> list[int]:
    return [LEVELS.index(offline.written_level(t.features) or "A1") for t in texts]


def line(name: str, predicted, truth) -> str:
    exact, within, kappa = figures(predicted, truth)
    return f"  {name:<34} exact {exact:6.1%}   within one {within:6.1%}   kappa {kappa:5.3f}"


def matrix(predicted, truth) -> str:
    rows = agreement([(LEVELS[p], LEVELS[t]) for p, t in zip(predicted, truth)]).matrix
    out = ["  rule \\ raters " + " ".join(f"{lvl:>4}" for lvl in LEVELS)]
    out += [f"  {LEVELS[i]:<14} " + " ".join(f"{n:>4}" for n in row) for i, row in enumerate(rows)]
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", type=Path, help="the Datasets/ folder of UniversalCEFRScoring (MERLIN)")
    parser.add_argument("--no-selection", action="store_true", help="fit all the candidate measures (skip the CV choice)")
    parser.add_argument("--measures-out", type=Path, help="also write the German texts' measures (no words of them) as CSV, as the tests read them "
                        "(assessments/rating/data/merlin_de_measures.csv)")
    args = parser.parse_args(argv)

    german = load(args.datasets, "DE")
    if args.measures_out:
        write_measures(german, args.measures_out)
    train = [t for t in german if not held_out(t.name)]
    test = [t for t in german if held_out(t.name)]
    train_levels = [t.level for t in train]
    test_levels = [t.level for t in test]
    print(f"MERLIN German: {len(german)} texts, {len(train)} training, {len(test)} held out "
          f"(SHA-256 of the file name, {HELD_OUT_SHARE:.0%})")

    names = CANDIDATES if args.no_selection else choose(train)
    rule = fit(train, names)
    steps = np.diff(rule.cuts)
    c2 = rule.cuts[-1] + float(steps.mean()) if len(steps) else rule.cuts[-1] + 1.0
    cuts = dict(zip(LEVELS[1:], [*rule.cuts, c2]))
    print("\nFitted on the training part (copy into assessments/rating/offline.py):")
    print(f"WRITTEN_INTERCEPT = {rule.intercept:.3f}")
    print("WRITTEN_WEIGHTS = {" + ", ".join(
        f'"{n}": {dict(zip(names, rule.weights)).get(n, 0.0):.3f}' for n in CANDIDATES) + "}")
    print("WRITTEN_CUTS = {" + ", ".join(f'"{lvl}": {c:.3f}' for lvl, c in cuts.items()) + "}  # C2 extrapolated")

    majority, length_cuts = baselines(train)
    words = word_counts
    print(f"\nLength alone (fit on training): cuts at {', '.join(f'{c:.0f}' for c in length_cuts)} words; "
          f"most common level in training: {LEVELS[majority]}")

    print(f"\nHeld-out German ({len(test)} texts):")
    print(line(f"always {LEVELS[majority]} (most common)", [majority] * len(test), test_levels))
    print(line("length alone", predict(words(test), length_cuts), test_levels))
    print(line("written rule (offline.py)", shipped_levels(test), test_levels))
    print(matrix(shipped_levels(test), test_levels))
    print(line("  (training part, same rule)", shipped_levels(train), train_levels))

    for corpus in ("IT", "CZ"):
        texts = load(args.datasets, corpus)
        truth = [t.level for t in texts]
        print(f"\nUnseen: MERLIN {corpus} ({len(texts)} texts, all of them; rule and baselines from German):")
        print(line(f"always {LEVELS[majority]}", [majority] * len(texts), truth))
        print(line("length alone", predict(words(texts), length_cuts), truth))
        print(line("written rule (offline.py)", shipped_levels(texts), truth))
        print(matrix(shipped_levels(texts), truth))
    return 0


if __name__ == "__main__":
    sys.exit(main())
