"""The learner's own assessment history: the list with a levels-over-time chart, and one assessment;
and a recorded answer's audio, for the teacher and the learner who said it."""

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import never_cache

from assessments.cefr import LEVEL_NAMES
from assessments.chart import level_chart
from assessments.grading import criteria_rows
from assessments.models import Assessment, Turn
from assessments.roles import own_learner


@login_required
def history(request):
    """The learner's own assessments, newest first, with their levels over time as a chart."""
    learner = own_learner(request)
    assessments = list(learner.assessments.order_by("created_at", "pk"))
    return render(
        request,
        "assessments/history.html",
        {"assessments": assessments[::-1], "chart": level_chart(assessments)},
    )


@login_required
def history_detail(request, pk):
    """One of the learner's own assessments with its session's transcript; 404 for anyone else's."""
    learner = own_learner(request)
    assessment = get_object_or_404(Assessment.objects.select_related("session"), pk=pk, learner=learner)
    return render(
        request,
        "assessments/history_detail.html",
        {
            "assessment": assessment,
            "level_name": LEVEL_NAMES.get(assessment.teacher_level or assessment.level, ""),
            "criteria": criteria_rows(assessment.criteria) if assessment.criteria else [],
            "turns": assessment.session.turns.all(),
        },
    )


def may_hear(user, turn: Turn) -> bool:
    """Teachers (staff who may view turns) and the learner who spoke may hear a recorded answer."""
    if user.is_staff and user.has_perm("assessments.view_turn"):
        return True
    return turn.session.learner.user_id == user.pk


@never_cache
@login_required
def turn_audio(request, pk):
    """A learner's recorded answer (WAV). Anyone else gets a 404, so ids reveal nothing; the file is
    read through the storage API and never exposed at a public media URL."""
    turn = get_object_or_404(Turn.objects.select_related("session__learner").exclude(audio=""), pk=pk)
    if not may_hear(request.user, turn):
        raise Http404("No such recording.")
    return FileResponse(turn.audio.open("rb"), content_type="audio/wav", filename=f"turn-{turn.pk}.wav")
