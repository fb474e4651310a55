"""Pages: the home page, the tutor page and the teachers' live view."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from assessments.cefr import LEVEL_NAMES, LEVELS
from assessments.roles import learner_for, own_learner
from tutor.forms import LanguagesForm
from tutor.live import can_watch

# The warm-up on the start screen: "can do" statements after the CEFR self-assessment grid (spoken
# production and interaction, Council of Europe), one per level.
SELF_ASSESSMENTS = (
    ("A1", "I can introduce myself and answer simple questions"),
    ("A2", "I can talk about my day, my family and what I did"),
    ("B1", "I can tell a story and explain my plans and opinions"),
    ("B2", "I can argue a point and discuss topical issues at length"),
    ("C1", "I can discuss complex topics fluently and precisely"),
    ("C2", "I speak with ease and nuance on any topic"),
)


def home(request):
    """What Parla is, with the way in."""
    return render(request, "home.html")


@login_required
def session(request, languages_form=None):
    """The live tutor page; its websocket is /ws/tutor/. A teacher (who has no tutor session to take:
    e.g. just logged in from a "start a session" link) lands on their desk, the admin index."""
    learner = learner_for(request.user)
    if learner is None and can_watch(request.user):
        messages.info(request, "The tutor page is for learners; this is your desk.")
        return redirect("admin:index")
    return render(
        request,
        "tutor/session.html",
        {
            "learner": learner,
            "languages_form": languages_form or (LanguagesForm(instance=learner) if learner else None),
            "levels": [(level, LEVEL_NAMES[level]) for level in LEVELS],
            "level_names": LEVEL_NAMES,
            "self_assessments": SELF_ASSESSMENTS,
        },
        status=400 if languages_form is not None else 200,
    )


@login_required
@require_POST
def languages(request):
    """Change the logged-in learner's own languages (the next session uses them)."""
    form = LanguagesForm(request.POST, instance=own_learner(request))
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
