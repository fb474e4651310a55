"""Create the Teachers group with view permissions on every Parla model plus review rights."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

# Frozen copy of assessments.roles.TEACHER_PERMISSIONS as of this migration (a test keeps them equal;
# a later change to the group gets its own migration).
TEACHERS_GROUP = "Teachers"
TEACHER_PERMISSIONS = (
    ("assessments", "view_learner"),
    ("assessments", "view_tutorsession"),
    ("assessments", "view_turn"),
    ("assessments", "view_probe"),
    ("assessments", "view_assessment"),
    ("assessments", "change_assessment"),
    ("assessments", "review_assessment"),
)


def create_teachers_group(apps, schema_editor):
    # Permissions are normally created by post_migrate, i.e. after *all* migrations; on a fresh
    # database they do not exist yet here, so create this app's now (idempotent).
    # (create_permissions skips app configs without a models module, as the migration state's are.)
    app_config = apps.get_app_config("assessments")
    models_module = getattr(app_config, "models_module", None)
    app_config.models_module = models_module or True
    try:
        create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
    finally:
        app_config.models_module = models_module

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    db = schema_editor.connection.alias
    group, _ = Group.objects.using(db).get_or_create(name=TEACHERS_GROUP)
    perms = [
        Permission.objects.using(db).get(content_type__app_label=app_label, codename=codename)
        for app_label, codename in TEACHER_PERMISSIONS
    ]
    group.permissions.add(*perms)


def delete_teachers_group(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name=TEACHERS_GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("assessments", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_teachers_group, delete_teachers_group)]
