"""Teacher-versus-machine agreement figures on plain data, checked against hand computation."""

import pytest

from assessments.agreement import agreement, agreement_label, weighted_kappa

# Five reviews: three the same, one a level apart, one two apart.
PAIRS = [("A1", "A1"), ("A2", "A2"), ("B1", "B1"), ("B1", "B2"), ("B2", "C2")]


def test_exact_and_adjacent_agreement():
    figures = agreement(PAIRS)
    assert figures.count == 5
    assert figures.exact == pytest.approx(3 / 5)
    assert figures.adjacent == pytest.approx(4 / 5)


def test_quadratic_weighted_kappa_by_hand():
    # Weights (i - j)^2 / 25 over six levels. Observed: one pair 1 apart, one 2 apart, so
    # sum w*O = (1 + 4) / 25 = 0.2. Chance: machine indices [0,1,2,2,3], teacher [0,1,2,3,5]; the sum
    # over all 25 cross pairs of (m - t)^2 is 39 + 22 + 15 + 15 + 18 = 109, so sum w*E = 109 / 25 / 5.
    expected = 1 - 0.2 / (109 / 125)
    assert agreement(PAIRS).kappa == pytest.approx(expected)
    assert expected == pytest.approx(0.7706, abs=1e-4)


def test_confusion_matrix_rows_are_machine_levels():
    matrix = agreement(PAIRS).matrix
    assert matrix[2] == (0, 0, 1, 1, 0, 0)  # machine B1: teacher B1 once, B2 once
    assert matrix[3][5] == 1  # machine B2, teacher C2
    assert sum(map(sum, matrix)) == 5


def test_perfect_agreement_is_kappa_one_and_systematic_disagreement_is_negative():
    assert agreement([("A1", "A1"), ("B2", "B2"), ("C1", "C1")]).kappa == pytest.approx(1.0)
    assert agreement([("A1", "C2"), ("C2", "A1")]).kappa < 0


def test_no_reviews_and_no_spread_give_no_kappa():
    empty = agreement([])
    assert (empty.count, empty.exact, empty.adjacent, empty.kappa) == (0, None, None, None)
    assert weighted_kappa(agreement([("B1", "B1"), ("B1", "B1")]).matrix) is None  # one level on both sides


@pytest.mark.parametrize(
    "machine, teacher, label",
    [("B1", "B1", "same"), ("B1", "A2", "one apart"), ("A1", "B2", "further"), ("B1", "", None), ("", "B1", None)],
)
def test_agreement_label(machine, teacher, label):
    assert agreement_label(machine, teacher) == label
