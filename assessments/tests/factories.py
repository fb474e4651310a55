"""Small builders of assessment records for tests (plain functions, no factory library)."""

from assessments.models import Assessment, CEFRLevel, Probe, TutorSession, Turn


def make_session_with_assessment(learner, *, level=CEFRLevel.B1, status=Assessment.Status.GRADED):
    """A finished session with two turns, two probes and its assessment."""
    session = TutorSession.objects.create(
        learner=learner, upstream=TutorSession.Upstream.SIMULATOR, model="gpt-realtime",
        target_language=learner.target_language, end_reason=TutorSession.EndReason.CEILING,
    )
    Turn.objects.create(session=session, role=Turn.Role.TUTOR, text="¿Cómo te llamas?", level="A1")
    Turn.objects.create(session=session, role=Turn.Role.LEARNER, text="Me llamo Ana.", level="A1")
    Probe.objects.create(session=session, level="B1", outcome=Probe.Outcome.SUSTAINED, evidence="narrated")
    Probe.objects.create(session=session, level="B2", outcome=Probe.Outcome.BREAKDOWN, evidence="stalled")
    assessment = Assessment.objects.create(
        learner=learner, session=session, level=level, status=status, grader="rules",
        criteria={"fluency": "B1", "range": "B1"}, summary="You can narrate events clearly.",
    )
    return session, assessment
