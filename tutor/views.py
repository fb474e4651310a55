"""Pages: the home page, the tutor page and the learner's assessment history."""

from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django.utils import dateformat, timezone

from assessments.models import Assessment
from tutor.auth import learner_for
from tutor.cefr import LEVEL_NAMES, LEVELS, level_index
from tutor.forms import LanguagesForm
from tutor.live import can_watch


def home(request):
    """What Parla is, with the way in."""
    return render(request, "home.html")


@login_required
def session(request, languages_form=None):
    """The live tutor page; its websocket is /ws/tutor/."""
    learner = learner_for(request.user)
    return render(
        request,
        "tutor/session.html",
        {
            "learner": learner,
            "languages_form": languages_form or (LanguagesForm(instance=learner) if learner else None),
            "levels": [(level, LEVEL_NAMES[level]) for level in LEVELS],
            "level_names": LEVEL_NAMES,
        },
        status=400 if languages_form is not None else 200,
    )


@login_required
@require_POST
def languages(request):
    """Change the logged-in learner's own languages (the next session uses them)."""
    form = LanguagesForm(request.POST, instance=_own_learner(request))
    if not form.is_valid():
        return session(request, languages_form=form)
    form.save()
    messages.success(request, f"Your next session is in {form.instance.get_target_language_display()}.")
    return redirect("tutor:session")


@login_required
def teacher_live(request):
    """Teachers watch running tutor sessions (snapshots over /ws/teacher/live/)."""
    if not can_watch(request.user):
        raise PermissionDenied("The live view is for teachers.")
    return render(request, "tutor/teacher_live.html", {"levels": LEVELS})


# -- history -------------------------------------------------------------------------------------


def _own_learner(request):
    """The Learner profile of the logged-in user; 403 for accounts without one (e.g. teachers)."""
    learner = learner_for(request.user)
    if learner is None:
        raise PermissionDenied("Only learner accounts have an assessment history.")
    return learner


@login_required
def history(request):
    """The learner's own assessments, newest first, with their levels over time as a chart."""
    learner = _own_learner(request)
    assessments = list(learner.assessments.order_by("created_at", "pk"))
    return render(
        request,
        "tutor/history.html",
        {"assessments": assessments[::-1], "chart": level_chart(assessments)},
    )


@login_required
def history_detail(request, pk):
    """One of the learner's own assessments with its session's transcript; 404 for anyone else's."""
    learner = _own_learner(request)
    assessment = get_object_or_404(Assessment.objects.select_related("session"), pk=pk, learner=learner)
    return render(
        request,
        "tutor/history_detail.html",
        {
            "assessment": assessment,
            "level_name": LEVEL_NAMES.get(assessment.teacher_level or assessment.level, ""),
            "criteria": [(name.replace("_", " ").capitalize(), value) for name, value in assessment.criteria.items()],
            "turns": assessment.session.turns.all(),
        },
    )


# -- the levels-over-time chart (server-rendered SVG, no JavaScript) ------------------------------


@dataclass(frozen=True)
class ChartPoint:
    x: float
    y: float
    level: str  # the level shown: the teacher's when reviewed, else the assessed one
    reviewed: bool
    date_label: str
    show_date: bool
    date_anchor: str  # text-anchor of the date label: the outer ones stay inside the chart
    middle: bool  # neither the first nor the last point (phone width shows only those dates)
    pk: int


@dataclass(frozen=True)
class LevelChart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    points: tuple[ChartPoint, ...]
    rows: tuple[tuple[str, float], ...]  # (level, y) gridlines, A1 at the bottom

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)

    @property
    def description(self) -> str:
        return "; ".join(
            f"{p.date_label}: {p.level}{' (reviewed by a teacher)' if p.reviewed else ''}" for p in self.points
        )


CHART_WIDTH, CHART_HEIGHT = 560, 214
CHART_LEFT, CHART_RIGHT, CHART_TOP, CHART_BOTTOM = 40, 544, 14, 174
CHART_DATE_LABELS = 6  # label every point up to this many; beyond, only the first and the last


def level_chart(assessments) -> LevelChart:
    """Chart geometry for `assessments` in date order: evenly spaced points, one row per level."""
    step = (CHART_BOTTOM - CHART_TOP) / (len(LEVELS) - 1)
    rows = tuple((level, CHART_BOTTOM - i * step) for i, level in enumerate(LEVELS))
    n = len(assessments)
    points = []
    for i, a in enumerate(assessments):
        level = a.teacher_level or a.level
        x = (CHART_LEFT + CHART_RIGHT) / 2 if n == 1 else CHART_LEFT + 12 + i * (CHART_RIGHT - CHART_LEFT - 24) / (n - 1)
        points.append(
            ChartPoint(
                x=x,
                y=CHART_BOTTOM - level_index(level) * step,
                level=level,
                reviewed=bool(a.teacher_level),
                date_label=dateformat.format(timezone.localtime(a.created_at), "j M Y"),
                show_date=n <= CHART_DATE_LABELS or i in (0, n - 1),
                date_anchor="middle" if n == 1 else "start" if i == 0 else "end" if i == n - 1 else "middle",
                middle=0 < i < n - 1,
                pk=a.pk,
            )
        )
    return LevelChart(
        CHART_WIDTH, CHART_HEIGHT, CHART_LEFT, CHART_RIGHT, CHART_TOP, CHART_BOTTOM, tuple(points), rows
    )
