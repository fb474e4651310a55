"""Django system checks of Parla's own settings (run by `manage.py check` and at server start)."""

from __future__ import annotations

from django.conf import settings
from django.core import checks

from config.openai_models import shutdown_date

SHUTDOWN_WARNING = "parla.W001"

# The settings that name an OpenAI model, and what each is for.
MODEL_SETTINGS = {
    "PARLA_REALTIME_MODEL": "the tutor's realtime model",
    "PARLA_TRANSCRIPTION_MODEL": "the learner's speech transcription",
    "PARLA_GRADER_MODEL": "the grader",
}


@checks.register()
def models_not_shutting_down(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """A Warning for each configured model whose shutdown is announced (config/openai_models.py)."""
    warnings = []
    for name, purpose in MODEL_SETTINGS.items():
        model = getattr(settings, name)
        date = shutdown_date(model)
        if date is not None:
            warnings.append(
                checks.Warning(
                    f"{name}={model!r} ({purpose}) has an announced shutdown on {date}.",
                    hint="Set it to a current model; see README 'Configuration' and "
                    "https://developers.openai.com/api/docs/deprecations.",
                    id=SHUTDOWN_WARNING,
                )
            )
    return warnings
