"""The Teachers group: staff who browse everything and review assessments in the admin."""

from django.contrib.auth.models import Group, Permission

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
