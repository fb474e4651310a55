"""Placement rules (DESIGN section 5) on plain data."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from assessments.cefr import LEVELS, level_index, next_level
from assessments.placement import (
    EARLY_END_REASONS,
    NATURAL_END_REASONS,
    Placement,
    PlacementFinished,
    PlacementUpdate,
    ProbeRecord,
)

S, B = "sustained", "breakdown"


def run(placement, *probes):
    """Record (level, outcome) pairs; return the last update."""
    update = None
    for level, outcome in probes:
        update = placement.record(level, outcome, f"{level} {outcome}")
    return update


def sustain(placement, level):
    return run(placement, (level, S), (level, S))


def test_starts_untested_at_the_start_level():
    p = Placement()
    assert p.current_level == "A1"
    assert not p.finished and p.end_reason is None and not p.partial
    assert p.floor is None and p.ceiling is None
    assert p.rating == "A1" and p.below_floor
    assert p.ladder() == {"A1": "current", "A2": "untested", "B1": "untested", "B2": "untested",
                          "C1": "untested", "C2": "untested"}
    assert p.probes == ()


def test_one_sustained_probe_does_not_move_the_ladder():
    p = Placement()
    update = p.record("A1", S, "said her name")
    assert update == PlacementUpdate(level_changed=False, current_level="A1", finished=False, end_reason=None)
    assert p.floor is None


def test_two_sustained_probes_sustain_the_level_and_step_up():
    p = Placement()
    update = sustain(p, "A1")
    assert update.level_changed and update.current_level == "A2" and not update.finished
    assert p.floor == "A1" and p.rating == "A1" and not p.below_floor
    assert p.ladder()["A1"] == "sustained" and p.ladder()["A2"] == "current"


def test_sustained_probes_need_not_be_consecutive():
    p = Placement()
    update = run(p, ("A1", S), ("A1", B), ("A1", S))
    assert update.level_changed and p.current_level == "A2" and p.floor == "A1"


def test_two_breakdowns_reach_the_ceiling_and_rate_the_floor():
    p = Placement()
    sustain(p, "A1")
    sustain(p, "A2")
    update = run(p, ("B1", B), ("B1", S), ("B1", B))
    assert update == PlacementUpdate(level_changed=False, current_level="B1", finished=True, end_reason="ceiling")
    assert p.floor == "A2" and p.ceiling == "B1" and p.rating == "A2"
    assert not p.partial
    assert p.ladder() == {"A1": "sustained", "A2": "sustained", "B1": "breakdown", "B2": "untested",
                          "C1": "untested", "C2": "untested"}


def test_sustaining_c2_ends_at_the_top():
    p = Placement()
    for level in LEVELS[:-1]:
        assert sustain(p, level).current_level == next_level(level)
    update = sustain(p, "C2")
    assert update.finished and update.end_reason == "top" and not update.level_changed
    assert p.floor == "C2" and p.rating == "C2" and p.ceiling is None
    assert set(p.ladder().values()) == {"sustained"}


def test_breakdown_at_a1_rates_a1_below_floor():
    p = Placement()
    update = run(p, ("A1", B), ("A1", B))
    assert update.finished and update.end_reason == "ceiling"
    assert p.floor is None and p.ceiling == "A1"
    assert p.rating == "A1" and p.below_floor


def test_probes_keep_level_outcome_and_stripped_evidence_in_order():
    p = Placement()
    p.record("A1", S, "  named three family members  ")
    p.record("A1", B)
    p.record("A1", S, None)
    assert p.probes == (
        ProbeRecord("A1", S, "named three family members"),
        ProbeRecord("A1", B, ""),
        ProbeRecord("A1", S, ""),
    )


# -- off-level probes ---------------------------------------------------------------------------


def test_off_level_probe_is_recorded_and_flagged_but_does_not_move_the_ladder():
    p = Placement()
    sustain(p, "A1")  # current A2
    update = p.record("A1", S, "late answer to the A1 question")
    assert update.off_level and not update.level_changed and update.current_level == "A2"
    assert p.probes[-1] == ProbeRecord("A1", S, "late answer to the A1 question", off_level=True)
    # Two off-level breakdowns above the current level reach no ceiling...
    run(p, ("B1", B), ("B1", B))
    assert not p.finished and p.ceiling is None and p.ladder()["B1"] == "untested"
    # ...and do not count once that level becomes current: one on-level breakdown is not two.
    sustain(p, "A2")
    assert p.record("B1", B).finished is False


def test_off_level_sustained_probes_do_not_count_towards_a_later_level():
    p = Placement()
    run(p, ("A2", S), ("A2", S))
    assert p.current_level == "A1" and p.floor is None
    sustain(p, "A1")
    assert p.record("A2", S).level_changed is False  # the first A2 probe that counts


# -- starting above A1 ----------------------------------------------------------------------------


def test_start_level_above_a1():
    p = Placement(start_level="B1")
    assert p.current_level == "B1" and p.ladder()["A1"] == "untested"
    sustain(p, "B1")
    run(p, ("B2", B), ("B2", B))
    assert p.finished and p.rating == "B1" and p.ceiling == "B2"


def test_breakdown_at_the_start_level_steps_down_to_find_a_floor():
    p = Placement(start_level="B1")
    update = run(p, ("B1", B), ("B1", B))
    assert update.level_changed and update.current_level == "A2" and not update.finished
    assert p.ladder()["B1"] == "breakdown" and p.ladder()["A2"] == "current"
    update = sustain(p, "A2")  # floor found below a known ceiling: done
    assert update.finished and update.end_reason == "ceiling" and not update.level_changed
    assert p.floor == "A2" and p.ceiling == "B1" and p.rating == "A2"


def test_stepping_down_to_a1_and_breaking_down_there_is_below_floor():
    p = Placement(start_level="A2")
    run(p, ("A2", B), ("A2", B))
    update = run(p, ("A1", B), ("A1", B))
    assert update.finished and p.floor is None and p.ceiling == "A1" and p.below_floor


def test_unknown_start_level_is_rejected():
    with pytest.raises(ValueError, match="unknown CEFR level 'D1'"):
        Placement(start_level="D1")


# -- invalid input and ending ---------------------------------------------------------------------


@pytest.mark.parametrize("level", ["a1", "D1", "", None, 3, " A1"])
def test_invalid_level_raises_a_clear_value_error(level):
    p = Placement()
    with pytest.raises(ValueError, match=r"invalid level .*expected one of A1, A2, B1, B2, C1, C2"):
        p.record(level, S)
    assert p.probes == ()


@pytest.mark.parametrize("outcome", ["Sustained", "pass", "", None])
def test_invalid_outcome_raises_a_clear_value_error(outcome):
    p = Placement()
    with pytest.raises(ValueError, match="invalid outcome .*'sustained' or 'breakdown'"):
        p.record("A1", outcome)
    assert p.probes == ()


def test_non_string_evidence_is_rejected():
    with pytest.raises(ValueError, match="invalid evidence"):
        Placement().record("A1", S, 42)


def test_probe_after_finish_is_rejected_and_not_recorded():
    p = Placement()
    run(p, ("A1", B), ("A1", B))
    with pytest.raises(PlacementFinished, match="already finished \\(ceiling\\)"):
        p.record("A1", S)
    assert isinstance(PlacementFinished("x"), ValueError)  # the session handles one error type
    assert len(p.probes) == 2


@pytest.mark.parametrize("reason", EARLY_END_REASONS)
def test_finish_early_keeps_what_is_known_and_is_partial(reason):
    p = Placement()
    sustain(p, "A1")
    p.record("A2", S)
    update = p.finish_early(reason)
    assert update == PlacementUpdate(level_changed=False, current_level="A2", finished=True, end_reason=reason)
    assert p.partial and p.finished and p.rating == "A1" and p.ceiling is None
    assert p.ladder()["A2"] == "current"  # where placement stopped
    with pytest.raises(PlacementFinished):
        p.record("A2", S)


def test_finish_early_with_nothing_sustained_is_partial_below_floor():
    p = Placement()
    p.finish_early("learner_left")
    assert p.partial and p.rating == "A1" and p.below_floor and p.probes == ()


def test_finish_early_after_the_ceiling_is_a_no_op():
    p = Placement()
    run(p, ("A1", B), ("A1", B))
    update = p.finish_early("learner_left")
    assert update.finished and update.end_reason == "ceiling"
    assert p.end_reason == "ceiling" and not p.partial


def test_finish_early_rejects_unknown_and_natural_reasons():
    p = Placement()
    for reason in ("ceiling", "bored"):
        with pytest.raises(ValueError, match="invalid early end reason"):
            p.finish_early(reason)
    assert not p.finished


def test_end_reasons_match_the_session_model():
    from assessments.models import TutorSession

    assert set(NATURAL_END_REASONS + EARLY_END_REASONS) == set(TutorSession.EndReason.values)


# -- properties -----------------------------------------------------------------------------------


def simulate(placement, sustains, limit=100):
    """Answer at the current level until placement ends; return the number of probes."""
    n = 0
    while not placement.finished:
        assert n < limit, "placement did not finish"
        level = placement.current_level
        placement.record(level, S if sustains(level) else B)
        n += 1
    return n


@given(true_level=st.sampled_from(LEVELS), start=st.sampled_from(LEVELS))
def test_a_consistent_learner_is_rated_at_their_true_level(true_level, start):
    p = Placement(start_level=start)
    simulate(p, lambda level: level_index(level) <= level_index(true_level))
    assert p.rating == true_level and not p.below_floor and not p.partial
    if true_level == "C2":
        assert p.end_reason == "top" and p.ceiling is None
    else:
        assert p.end_reason == "ceiling" and p.ceiling == next_level(true_level)


@given(start=st.sampled_from(LEVELS))
def test_a_learner_below_a1_is_rated_a1_below_floor(start):
    p = Placement(start_level=start)
    simulate(p, lambda level: False)
    assert p.rating == "A1" and p.below_floor and p.ceiling == "A1"


@given(start=st.sampled_from(LEVELS), outcomes=st.lists(st.sampled_from([S, B]), min_size=18, max_size=18))
def test_any_answers_end_within_three_probes_a_level_with_a_consistent_result(start, outcomes):
    p = Placement(start_level=start)
    answers = iter(outcomes)
    n = simulate(p, lambda level: next(answers) == S, limit=18)
    assert n <= 3 * len(LEVELS)
    assert p.end_reason in NATURAL_END_REASONS and not p.partial
    if p.end_reason == "top":
        assert p.floor == "C2" and p.ceiling is None
    elif p.floor is None:
        assert p.ceiling == "A1"
    else:
        assert p.ceiling == next_level(p.floor)
    # The ladder agrees with the result.
    ladder = p.ladder()
    assert (p.floor is None) or ladder[p.floor] == "sustained"
    assert (p.ceiling is None) or ladder[p.ceiling] == "breakdown"
    assert len(p.probes) == n


# --- no rating without evidence ------------------------------------------------------------------


def test_no_answer_is_no_evidence_whatever_ended_the_session():
    for reason in EARLY_END_REASONS:
        p = Placement()
        p.finish_early(reason)
        assert p.rated_answers == 0
        assert not p.has_evidence(1) and not p.has_evidence(2)


def test_fewer_rated_answers_than_the_minimum_is_no_evidence():
    p = Placement()
    sustain(p, "A1")
    p.finish_early("learner_stopped")
    assert p.rated_answers == 2
    assert p.has_evidence(2) and not p.has_evidence(3)


def test_cut_short_before_anything_was_sustained_is_no_evidence():
    p = Placement()
    run(p, ("A1", S), ("A1", B))
    p.finish_early("time_cap")
    assert p.rated_answers == 2 and p.floor is None
    assert not p.has_evidence(2)  # "working towards A1" would be a guess, not what was seen


def test_cut_short_after_a_level_was_sustained_is_rated_at_least_that_level():
    p = Placement()
    sustain(p, "A1")
    sustain(p, "A2")
    run(p, ("B1", B))
    p.finish_early("learner_stopped")
    assert p.has_evidence(2) and p.partial and p.rating == "A2"


def test_two_breakdowns_at_a1_are_evidence_of_working_towards_a1():
    p = Placement()
    run(p, ("A1", B), ("A1", B))
    assert p.end_reason == "ceiling" and p.below_floor
    assert p.has_evidence(2)


# --- the warm-up: a quicker climb for strong speakers --------------------------------------------


from assessments.placement import starting_level  # noqa: E402


def test_the_self_assessment_decides_the_starting_level():
    assert starting_level(None) == starting_level("") == "A1"  # not sure
    assert starting_level("B1") == "B1"
    assert starting_level("C2") == "C1"  # two answers would be thin evidence for the top


def answers_to_ceiling(self_assessment, true_level):
    p = Placement(start_level=starting_level(self_assessment))
    n = simulate(p, lambda level: level_index(level) <= level_index(true_level))
    assert p.rating == true_level and not p.partial
    return n


def test_a_c1_speaker_reaches_the_ceiling_in_a_few_answers():
    assert answers_to_ceiling("C1", "C1") == 4  # C1 sustained twice, C2 broken down twice
    assert answers_to_ceiling(None, "C1") == 12  # from A1 without the warm-up


def test_a_learner_who_over_rates_themself_is_stepped_down_and_placed_correctly():
    p = Placement(start_level=starting_level("C1"))
    run(p, ("C1", B), ("C1", B))  # the start was too high
    update = run(p, ("B2", B))  # stepping down: one breakdown is enough to step down again
    assert update.level_changed and p.current_level == "B1" and p.ladder()["B2"] == "breakdown"
    run(p, ("B1", B))
    assert p.current_level == "A2"
    update = sustain(p, "A2")
    assert update.finished and p.rating == "A2" and p.ceiling == "B1" and not p.below_floor
    assert answers_to_ceiling("C1", "A2") == 6


def test_stepping_down_stays_at_two_breakdowns_at_a1():
    p = Placement(start_level="B1")
    run(p, ("B1", B), ("B1", B), ("A2", B))
    assert p.current_level == "A1"
    assert not run(p, ("A1", B)).finished  # "working towards A1" needs two
    assert run(p, ("A1", B)).finished and p.below_floor


@given(claimed=st.sampled_from([None, *LEVELS]), true_level=st.sampled_from(LEVELS))
def test_whatever_the_self_assessment_a_consistent_learner_is_placed_at_their_level(claimed, true_level):
    assert answers_to_ceiling(claimed, true_level) <= 3 * len(LEVELS)
