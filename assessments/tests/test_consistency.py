"""The card never contradicts itself (assessments.grading.consistency), and the grader sees the
conversation in order with each answer's judgement beside it."""

from hypothesis import given, settings, strategies as st

from assessments.cefr import LEVELS, level_index
from assessments.grading import CRITERIA, GradeInput, GradeResult, grade_by_rules
from assessments.grading.consistency import band, contradictions
from assessments.grading.openai_grader import grader_prompt
from assessments.grading.rules import reconcile
from assessments.placement import Placement, ProbeRecord
from assessments.transcript import Transcript

import json

TURNS = ("Me llamo Ana y vivo en Madrid.", "Ayer fui al cine con mi hermana.", "No sé.")


def data(level="A2", floor="A2", ceiling="B1", partial=False, end_reason="ceiling", turns=TURNS):
    probes = (ProbeRecord("A2", "sustained", "clear past tense"), ProbeRecord("B1", "breakdown", "long pause"))
    return GradeInput("es", "en", level, floor, ceiling, partial, end_reason, probes, tuple(turns), ("¿Y tú?",))


def test_the_issues_card_is_made_consistent_and_flagged_for_the_teacher():
    # Overall A2 with accuracy and fluency B1 after breaking down at B1; and the grader's own B1.
    given_card = GradeResult(
        "B1",
        {c: {"level": "B1" if c in ("accuracy", "fluency") else "A2", "evidence": "fui al cine", "confidence": "high"}
         for c in CRITERIA},
        "Your speaking level is B1, Threshold. Your strength is fluency.",
        "openai:x",
    )
    d = data()
    assert contradictions(d, given_card)  # the rule sees what is wrong
    card = reconcile(d, given_card)
    assert contradictions(d, card) == []
    assert card.level == "A2" and card.grader_level == "B1"
    assert {v["level"] for c, v in card.criteria.items() if c in CRITERIA} == {"A2"}
    assert "accuracy B1" in card.flag and "fluency B1" in card.flag and "B1 differs" in card.flag
    assert card.summary.startswith("Your speaking level is A2, Waystage.")
    assert "level is B1" not in card.summary and "strength is fluency" not in card.summary


def test_a_criterion_without_a_quote_of_the_learner_is_not_assessed():
    invented = GradeResult("A2", {c: {"level": "A2", "evidence": "habla con soltura", "confidence": "high"}
                                  for c in CRITERIA}, "Your speaking level is A2, Waystage. Good.", "x")
    card = reconcile(data(), invented)
    assert all(card.criteria[c]["level"] is None for c in CRITERIA)
    assert "no quote" in card.flag


def test_phonology_is_not_assessed_from_text_unless_measured():
    d = data()
    assert grade_by_rules(d).criteria["phonology"] == {
        "level": None, "evidence": "", "confidence": None, "note": "a transcript cannot show pronunciation"}
    rated = GradeResult("A2", {"phonology": {"level": "A2", "evidence": "No sé.", "confidence": "low"}}, "", "x")
    assert "phonology: rated without a measure" in contradictions(d, rated)
    assert reconcile(d, rated).criteria["phonology"]["level"] is None


def test_band_follows_the_evidence():
    assert band(data()) == ("A1", "A2")  # broke down at B1: nothing at B1
    assert band(data(ceiling=None, partial=True, end_reason="time_cap")) == ("A1", "B1")  # at least A2
    assert band(data(level="A1", floor=None, ceiling="A1")) == ("A1", "A1")  # working towards A1
    assert band(data(level="C2", floor="C2", ceiling=None, end_reason="top")) == ("C1", "C2")


criterion_values = st.one_of(
    st.sampled_from(LEVELS), st.none(), st.just("Z9"),
    st.fixed_dictionaries({
        "level": st.one_of(st.sampled_from(LEVELS), st.none()),
        "evidence": st.sampled_from(["", "fui al cine", "invented words", "long pause", "No sé."]),
        "confidence": st.sampled_from(["low", "high", "", None]),
    }),
)


@settings(max_examples=200, deadline=None)
@given(
    floor=st.sampled_from(LEVELS), above=st.integers(0, 2), partial=st.booleans(),
    grader_level=st.sampled_from(LEVELS),
    criteria=st.dictionaries(st.sampled_from([*CRITERIA, "phonology"]), criterion_values),
    feedback=st.sampled_from(["", "Well done.", "You are C1 really.", "Aim towards the next level.",
                              "Your level is A1."]),
    turns=st.sampled_from([(), TURNS]),
)
def test_any_grader_output_becomes_a_consistent_card(floor, above, partial, grader_level, criteria, feedback, turns):
    i = level_index(floor)
    ceiling = None if partial or i + above >= len(LEVELS) or above == 0 else LEVELS[i + above]
    d = data(level=floor, floor=floor, ceiling=ceiling, partial=partial,
             end_reason="time_cap" if partial else ("ceiling" if ceiling else "top"), turns=turns)
    card = reconcile(d, GradeResult(grader_level, criteria, feedback, "x"))
    assert contradictions(d, card) == [], card
    assert card.level == floor  # never silently changed
    assert (card.grader_level is not None) == (grader_level != floor)
    assert contradictions(d, grade_by_rules(d)) == []


def test_the_grader_receives_the_conversation_in_order_with_each_judgement_beside_its_answer():
    transcript, placement = Transcript(), Placement()
    transcript.add("tutor", "¿Cómo te llamas?")
    transcript.add("learner", "Me llamo Ana.")
    placement.record("A1", "sustained", "gives her name")
    transcript.judge(placement.probes[-1])
    transcript.add("tutor", "¿Dónde vives?")
    transcript.add("learner", "En Madrid.")
    transcript.add("learner", "Con mi familia.")  # a second fragment of the same answer: one judgement
    placement.record("A1", "sustained", "says where she lives")
    transcript.judge(placement.probes[-1])
    assert not transcript.judge(ProbeRecord("A2", "breakdown"))  # no answer left to judge: kept aside
    placement.finish_early("learner_stopped")

    sent = json.loads(grader_prompt(transcript.grade_input(placement, target_language="es", native_language="en")))
    assert [(t["role"], t["text"], t.get("judgement", {}).get("evidence")) for t in sent["conversation"]] == [
        ("tutor", "¿Cómo te llamas?", None),
        ("learner", "Me llamo Ana.", "gives her name"),
        ("tutor", "¿Dónde vives?", None),
        ("learner", "En Madrid.", None),
        ("learner", "Con mi familia.", "says where she lives"),
    ]
