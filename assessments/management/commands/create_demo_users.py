"""Create the demo learner and demo teacher (DEBUG only), printing their passwords once."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from assessments.models import Language, Learner
from assessments.roles import ensure_teachers_group

LEARNER_USERNAME = "learner"
TEACHER_USERNAME = "teacher"


class Command(BaseCommand):
    help = (
        "Create (DEBUG only) a demo learner and a demo teacher with generated passwords, printed once. "
        "Existing demo users keep their passwords unless --reset is given."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--reset", action="store_true", help="Give existing demo users new passwords (printed)."
        )

    def handle(self, *args, reset=False, **options):
        if not settings.DEBUG:
            raise CommandError(
                "create_demo_users runs only with DEBUG on: demo accounts do not belong on a production "
                "server (use createsuperuser and the admin there)."
            )
        with transaction.atomic():
            learner, learner_pw = self._user(LEARNER_USERNAME, reset, is_staff=False)
            Learner.objects.get_or_create(user=learner, defaults={"target_language": Language.SPANISH})
            teacher, teacher_pw = self._user(TEACHER_USERNAME, reset, is_staff=True)
            teacher.groups.add(ensure_teachers_group())

        self._report("learner", learner, learner_pw, "tutor page: /session/")
        self._report("teacher", teacher, teacher_pw, "admin: /admin/")
        if learner_pw or teacher_pw:
            self.stdout.write("These passwords are shown only once; run with --reset for new ones.")

    def _user(self, username, reset, *, is_staff):
        """(user, new password or None). A new password only for a new user or with --reset."""
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username)
        password = None
        if created or reset:
            password = secrets.token_urlsafe(12)
            user.set_password(password)
        user.is_staff = is_staff
        user.is_active = True
        user.save()
        return user, password

    def _report(self, role, user, password, where):
        if password:
            self.stdout.write(
                self.style.SUCCESS(f"demo {role}: username={user.username} password={password}  ({where})")
            )
        else:
            self.stdout.write(f"demo {role}: username={user.username} exists, password unchanged  ({where})")
