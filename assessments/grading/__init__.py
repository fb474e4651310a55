"""Graders: turn a finished placement and its transcript into a CEFR assessment.

`types` holds what every grader takes and gives and the `Grader` interface; `rules` the deterministic,
offline grader; `openai_grader` the model grader, which falls back to the rules on any failure.
`get_grader()` picks one from the settings. Importable without Django configured.
"""

from assessments.grading.openai_grader import OpenAIGrader
from assessments.grading.rules import RulesGrader, fallback_grade, grade_by_rules, reconcile
from assessments.grading.types import CRITERIA, GradeInput, GradeResult, Grader, criteria_rows

__all__ = [
    "CRITERIA",
    "GradeInput",
    "GradeResult",
    "Grader",
    "OpenAIGrader",
    "RulesGrader",
    "criteria_rows",
    "fallback_grade",
    "get_grader",
    "grade_by_rules",
    "reconcile",
]


def get_grader() -> Grader:
    """The grader the settings ask for (PARLA_GRADER: "rules" or "openai")."""
    # Imported here so this package stays importable without Django configured.
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    kind = settings.PARLA_GRADER
    if kind == "rules":
        return RulesGrader()
    if kind == "openai":
        if not settings.OPENAI_API_KEY:
            raise ImproperlyConfigured("PARLA_GRADER=openai needs OPENAI_API_KEY")
        return OpenAIGrader(
            api_key=settings.OPENAI_API_KEY,
            model=settings.PARLA_GRADER_MODEL,
            timeout=settings.PARLA_GRADER_TIMEOUT,
        )
    raise ImproperlyConfigured(f"PARLA_GRADER must be 'rules' or 'openai', not {kind!r}")
