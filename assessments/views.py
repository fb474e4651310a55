"""The learner's own assessment history: the list with a levels-over-time chart, and one assessment."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render

from assessments.cefr import LEVEL_NAMES
from assessments.chart import level_chart
from assessments.models import Assessment
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
            "criteria": [(name.replace("_", " ").capitalize(), value) for name, value in assessment.criteria.items()],
            "turns": assessment.session.turns.all(),
        },
    )
