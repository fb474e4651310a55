"""The Transcript: the one record of what was said, for grading, replay and Turn rows (plain data)."""

import pytest

from assessments.models import Assessment, TutorSession, Turn
from assessments.placement import Placement
from assessments.services import grade_input_from_db
from assessments.transcript import LEARNER, NARRATOR, TUTOR, Transcript, Utterance


def test_add_keeps_words_only_stripped_and_in_order():
    transcript = Transcript()
    assert transcript.add(LEARNER, "   ") is None
    assert transcript.add(LEARNER, None) is None
    first = transcript.add(TUTOR, " ¿Cómo te llamas? ", "item_1", "A1")
    second = transcript.add(LEARNER, "Me llamo Ana.", "item_2", "A1")
    assert first == Utterance(TUTOR, "¿Cómo te llamas?", "item_1", "A1")
    assert transcript.utterances == [first, second]


def test_conversation_leaves_the_narrator_out_and_grading_sees_both_sides():
    transcript = Transcript()
    transcript.add(TUTOR, "¿De dónde eres?")
    transcript.add(LEARNER, "Soy de Madrid.")
    transcript.add(NARRATOR, "Your speaking level is A1.")
    assert [u.role for u in transcript.conversation] == [TUTOR, LEARNER]
    placement = Placement()
    placement.record("A1", "sustained")
    data = transcript.grade_input(placement, target_language="es", native_language="en")
    assert data.learner_turns == ("Soy de Madrid.",)
    assert data.tutor_turns == ("¿De dónde eres?",)
    assert data.probes == placement.probes


@pytest.mark.django_db
def test_stored_turns_rebuild_the_same_grade_input_as_the_live_transcript(learner_user):
    live = Transcript()
    placement = Placement()
    session = TutorSession.objects.create(
        learner=learner_user.learner, upstream="simulator", model="m", target_language="es"
    )
    for role, text in [(TUTOR, "Hola, ¿cómo te llamas?"), (LEARNER, "Me llamo Ana."), (NARRATOR, "Summary.")]:
        utterance = live.add(role, text, "", placement.current_level)
        Turn.objects.create(session=session, role=role, text=utterance.text, level=utterance.level)
    placement.finish_early("learner_left")
    assessment = Assessment.objects.create(learner=learner_user.learner, session=session, level="A1", partial=True)
    session.end_reason = "learner_left"
    session.save()

    live_input = live.grade_input(placement, target_language="es", native_language="en")
    assert grade_input_from_db(assessment) == live_input


def test_text_from_any_source_is_stored_without_nul_or_unpaired_surrogates():
    transcript = Transcript()
    utterance = transcript.add(TUTOR, "Hola\x00 \ud800mundo")
    assert utterance.text == "Hola ?mundo"
    utterance.text.encode("utf-8")  # storable as UTF-8 (would raise otherwise)
