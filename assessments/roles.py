"""Who is who: a user's Learner profile, and the Teachers group (staff who review assessments in the admin)."""

from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied

from assessments.models import Learner

TEACHERS_GROUP = "Teachers"

# (app_label, codename). Teachers see every Parla record; the only thing they change is the review
# part of an assessment (teacher level and notes), which `review_assessment` unlocks in the admin.
TEACHER_PERMISSIONS = (
    ("assessments", "view_learner"),
    ("assessments", "view_tutorsession"),
    ("assessments", "view_turn"),
    ("assessments", "view_probe"),
    ("assessments", "view_assessment"),
    ("assessments", "change_assessment"),
    ("assessments", "review_assessment"),
)


def ensure_teachers_group() -> Group:
    """The Teachers group with exactly TEACHER_PERMISSIONS (created by migration 0002; this repairs it)."""
    group, _ = Group.objects.get_or_create(name=TEACHERS_GROUP)
    perms = [
        Permission.objects.get(content_type__app_label=app_label, codename=codename)
        for app_label, codename in TEACHER_PERMISSIONS
    ]
    group.permissions.set(perms)
    return group


def learner_for(user) -> Learner | None:
    """The Learner profile of `user`, or None for anonymous users and users without one (sync)."""
    if user is None or not user.is_authenticated:
        return None
    return Learner.objects.filter(user_id=user.pk).select_related("user").first()


def own_learner(request) -> Learner:
    """The Learner profile of the logged-in user; 403 for accounts without one (e.g. teachers)."""
    learner = learner_for(request.user)
    if learner is None:
        raise PermissionDenied("Only learner accounts have an assessment history and languages to choose.")
    return learner
