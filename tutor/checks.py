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


TRANSCRIPTION_WARNING = "parla.W002"


@checks.register()
def transcription_takes_turn_detection(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """A Warning when the transcription model is one documented to require turn detection off: the
    tutor session needs it on (tutor/persona.py has the sources), so the API may refuse it."""
    from tutor import persona  # the persona module imports the assessments app's models' helpers

    model = settings.PARLA_TRANSCRIPTION_MODEL
    if persona.takes_turn_detection(model):
        return []
    return [
        checks.Warning(
            f"PARLA_TRANSCRIPTION_MODEL={model!r} is documented to require turn detection off; the tutor "
            "session uses it on, so the API may refuse it (sessions then fall back to "
            f"{persona.TRANSCRIPTION_FALLBACK!r}).",
            hint="Use gpt-transcribe, and run `python manage.py realtime_check` (README 'Deployment').",
            id=TRANSCRIPTION_WARNING,
        )
    ]
