"""The Teachers group: created by a data migration, with view rights and assessment review."""

import importlib

import pytest
from django.apps import apps
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from assessments.roles import TEACHER_PERMISSIONS, TEACHERS_GROUP, ensure_teachers_group

pytestmark = pytest.mark.django_db
migration = importlib.import_module("assessments.migrations.0002_teachers_group")


def group_permissions(group):
    return {(p.content_type.app_label, p.codename) for p in group.permissions.all()}


@pytest.mark.django_db(transaction=True)  # a schema editor (SQLite's needs no enclosing transaction)
def test_migration_creates_the_teachers_group():
    # The migration itself, applied as `migrate` applies it (its operations on the state before it),
    # not the rows it left in the test database: a test with transaction=True empties every table, and
    # on several workers (scripts/test) such a test may run before this one in the same process.
    Group.objects.filter(name=TEACHERS_GROUP).delete()
    executor = MigrationExecutor(connection)
    teachers = executor.loader.get_migration("assessments", "0002_teachers_group")
    before = executor.loader.project_state(teachers.dependencies)
    with connection.schema_editor() as editor:
        teachers.apply(before, editor)
    assert group_permissions(Group.objects.get(name=TEACHERS_GROUP)) == set(TEACHER_PERMISSIONS)


def test_teachers_view_everything_and_change_only_assessments():
    codenames = {codename for _, codename in TEACHER_PERMISSIONS}
    for model in ("learner", "tutorsession", "turn", "probe", "assessment"):
        assert f"view_{model}" in codenames
    assert {c for c in codenames if not c.startswith("view_")} == {"change_assessment", "review_assessment"}


def test_migration_list_is_frozen_copy_of_roles():
    assert migration.TEACHERS_GROUP == TEACHERS_GROUP
    assert migration.TEACHER_PERMISSIONS == TEACHER_PERMISSIONS


def test_migration_function_is_idempotent():
    class Editor:  # the part of a schema editor the migration uses
        class connection:
            alias = "default"

    Group.objects.filter(name=TEACHERS_GROUP).delete()
    migration.create_teachers_group(apps, Editor)
    migration.create_teachers_group(apps, Editor)
    assert group_permissions(Group.objects.get(name=TEACHERS_GROUP)) == set(TEACHER_PERMISSIONS)


def test_ensure_teachers_group_repairs_it():
    group, _ = Group.objects.get_or_create(name=TEACHERS_GROUP)
    group.permissions.clear()
    assert group_permissions(ensure_teachers_group()) == set(TEACHER_PERMISSIONS)


def test_teacher_has_review_permission(teacher_user, learner_user):
    assert teacher_user.has_perm("assessments.review_assessment")
    assert teacher_user.has_perm("assessments.view_turn")
    assert not teacher_user.has_perm("assessments.delete_assessment")
    assert not learner_user.has_perm("assessments.view_assessment")
