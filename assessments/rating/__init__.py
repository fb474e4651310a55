"""The independent rater: judges every learner answer exactly once, separately from the tutor.

`types` holds the `Answer`, the `Judgement` and the `Rater` interface; `offline` the rater from what
can be measured without a model (text features of written answers, the audio of spoken ones);
`openai_rater` the model rater. `get_rater()` picks one from the settings. Importable without Django
configured.
"""

from assessments.rating.offline import OfflineRater, rate_offline
from assessments.rating.openai_rater import OpenAIRater
from assessments.rating.types import (
    BREAKDOWN,
    JUDGEMENT_OUTCOMES,
    NOT_RATABLE,
    SPOKEN,
    SUSTAINED,
    WRITTEN,
    Answer,
    Judgement,
    Rater,
)

__all__ = [
    "BREAKDOWN", "JUDGEMENT_OUTCOMES", "NOT_RATABLE", "SPOKEN", "SUSTAINED", "WRITTEN",
    "Answer", "Judgement", "OfflineRater", "OpenAIRater", "Rater", "get_rater", "rate_offline",
]


def get_rater() -> Rater:
    """The rater the settings ask for (PARLA_RATER: "offline" or "openai")."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    kind = settings.PARLA_RATER
    if kind == "offline":
        return OfflineRater()
    if kind == "openai":
        if not settings.OPENAI_API_KEY:
            raise ImproperlyConfigured("PARLA_RATER=openai needs OPENAI_API_KEY")
        return OpenAIRater(
            api_key=settings.OPENAI_API_KEY, model=settings.PARLA_RATER_MODEL, timeout=settings.PARLA_RATER_TIMEOUT
        )
    raise ImproperlyConfigured(f"PARLA_RATER must be 'offline' or 'openai', not {kind!r}")
