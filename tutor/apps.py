from django.apps import AppConfig


class TutorConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "tutor"
    verbose_name = "Tutor"

    def ready(self) -> None:
        from tutor import checks  # noqa: F401  registers Parla's system checks
        from tutor import signals  # noqa: F401  connects the receivers
