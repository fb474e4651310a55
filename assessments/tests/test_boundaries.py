"""The dependency rule of the re-cut: `assessments` (the record and its rules) never imports `tutor`."""

import ast
from pathlib import Path

import pytest

ASSESSMENTS = Path(__file__).resolve().parents[1]
FORBIDDEN = "tutor"


def imported_modules(source: str) -> set[str]:
    """Every absolute module an `import` or `from ... import` statement names, wherever it sits."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def imports_tutor(source: str) -> bool:
    return any(name == FORBIDDEN or name.startswith(FORBIDDEN + ".") for name in imported_modules(source))


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import tutor", True),
        ("from tutor.runtime import delivery", True),
        ("def f():\n    import tutor.realtime.client as c", True),  # a lazy import counts too
        ("if TYPE_CHECKING:\n    from tutor import persona", True),
        ("import tutorial\nfrom assessments import cefr\nfrom . import tutor", False),
    ],
)
def test_the_check_recognises_imports_of_tutor(source, expected):
    assert imports_tutor(source) is expected


def test_assessments_never_imports_tutor():
    modules = sorted(ASSESSMENTS.rglob("*.py"))
    assert ASSESSMENTS / "grading" / "openai_grader.py" in modules  # the walk reaches into packages
    offenders = [str(path.relative_to(ASSESSMENTS)) for path in modules if imports_tutor(path.read_text())]
    assert offenders == []
