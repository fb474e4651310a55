"""How far to trust the machine: teacher-versus-machine agreement on CEFR levels (pure, no Django).

Input is a list of (machine level, teacher level) pairs from reviewed assessments. The figures:
exact agreement, adjacent agreement (at most one level apart), Cohen's kappa with *quadratic* weights
over the six CEFR levels (disagreements cost the square of their distance, the usual choice for an
ordinal scale such as CEFR), and the confusion matrix (machine levels as rows, teacher levels as columns).
"""

from __future__ import annotations

from dataclasses import dataclass

from assessments.cefr import LEVELS, level_index

SAME, ONE_APART, FURTHER = "same", "one apart", "further"


def distance(machine: str, teacher: str) -> int:
    """How many CEFR levels apart the two ratings are (0 = the same)."""
    return abs(level_index(machine) - level_index(teacher))


def agreement_label(machine: str, teacher: str) -> str | None:
    """"same", "one apart" or "further"; None when either side has no level (not reviewed, not rated)."""
    if not machine or not teacher:
        return None
    return (SAME, ONE_APART)[d] if (d := distance(machine, teacher)) < 2 else FURTHER


@dataclass(frozen=True)
class Agreement:
    count: int
    exact: float | None  # share of pairs with the same level
    adjacent: float | None  # share of pairs at most one level apart (includes exact)
    kappa: float | None  # quadratic weighted Cohen's kappa; None when undefined (no pairs, no spread)
    matrix: tuple[tuple[int, ...], ...]  # matrix[machine index][teacher index]


def confusion_matrix(pairs: list[tuple[str, str]]) -> tuple[tuple[int, ...], ...]:
    counts = [[0] * len(LEVELS) for _ in LEVELS]
    for machine, teacher in pairs:
        counts[level_index(machine)][level_index(teacher)] += 1
    return tuple(tuple(row) for row in counts)


def weighted_kappa(matrix: tuple[tuple[int, ...], ...]) -> float | None:
    """Cohen's kappa with quadratic weights w_ij = (i - j)^2 / (k - 1)^2: 1 - sum(w*O) / sum(w*E).

    E is what chance would give with the same marginals (row_i * col_j / n). None when sum(w*E) is 0:
    both raters used a single, identical level, so agreement beyond chance is undefined.
    """
    k = len(matrix)
    n = sum(map(sum, matrix))
    if n == 0:
        return None
    rows = [sum(row) for row in matrix]
    cols = [sum(matrix[i][j] for i in range(k)) for j in range(k)]
    weight = [[(i - j) ** 2 / (k - 1) ** 2 for j in range(k)] for i in range(k)]
    observed = sum(weight[i][j] * matrix[i][j] for i in range(k) for j in range(k))
    expected = sum(weight[i][j] * rows[i] * cols[j] / n for i in range(k) for j in range(k))
    if expected == 0:
        return None
    return 1 - observed / expected


def agreement(pairs: list[tuple[str, str]]) -> Agreement:
    """All the figures for (machine, teacher) level pairs."""
    n = len(pairs)
    distances = [distance(m, t) for m, t in pairs]
    matrix = confusion_matrix(pairs)
    return Agreement(
        count=n,
        exact=sum(d == 0 for d in distances) / n if n else None,
        adjacent=sum(d <= 1 for d in distances) / n if n else None,
        kappa=weighted_kappa(matrix),
        matrix=matrix,
    )
