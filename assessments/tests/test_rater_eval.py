"""`manage.py rater_eval`: the configured rater against a labelled set, and the desk's export of one."""

import csv
import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from assessments.agreement import agreement
from assessments.rating.evaluation import read_labelled
from assessments.rating.offline import text_features, written_level

SAMPLE = Path(__file__).resolve().parent / "data" / "rater_eval_sample.csv"


def run(path) -> str:
    out = io.StringIO()
    call_command("rater_eval", str(path), stdout=out)
    return out.getvalue()


def test_the_offline_rater_is_measured_on_a_labelled_set(settings):
    """The figures printed are those of the rule's own levels for the texts (computed here without the
    command's climb through the rater), and the row that only repeats its question is set apart."""
    settings.PARLA_RATER = "offline"
    printed = run(SAMPLE)
    items = read_labelled(SAMPLE.open(newline="", encoding="utf-8"))
    echo = [i for i in items if i.text == i.question]
    assert len(echo) == 1
    expected = agreement([(written_level(text_features(i.text, i.language)), i.level) for i in items if i not in echo])
    lines = printed.splitlines()
    assert lines[0] == f"rater offline: {len(items)} texts, {len(items) - 1} rated"
    assert lines[1] == f"not ratable: 1 (lines {echo[0].row})"
    assert f"exact {expected.exact * 100:.1f} %" in lines
    assert f"within one {expected.adjacent * 100:.1f} %" in lines
    assert f"kappa {expected.kappa:.3f}" in lines
    matrix = lines[lines.index("confusion matrix (rows: rater, columns: teachers)") + 2:]
    assert [[int(n) for n in row.split()[1:]] for row in matrix] == [list(r) for r in expected.matrix]
    assert 0 < expected.exact < 1 and sum(map(sum, expected.matrix)) == len(items) - 1


@pytest.mark.parametrize("content, message", [
    ("language,text\nes,Hola\n", "the header lacks level"),
    ("language,level,text\nes,B3,Hola\n", "line 2: level 'B3' is not one of"),
    ("language,level,text\nes,A1,Hola\nEspañol,A1,Hola\n", "line 3: language 'español'"),
    ("language,level,text\nes,A1,\n", "line 2: no text"),
    ("language,level,text\n", "no rows under the header"),
])
def test_a_file_that_is_not_a_labelled_set_gets_a_clear_error(tmp_path, settings, content, message):
    settings.PARLA_RATER = "offline"
    path = tmp_path / "set.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CommandError, match=message):
        run(path)
    with pytest.raises(CommandError, match="cannot read"):
        run(tmp_path / "missing.csv")


def test_a_model_rater_without_a_key_is_a_clear_error(settings):
    settings.PARLA_RATER, settings.OPENAI_API_KEY = "openai", ""
    with pytest.raises(CommandError, match="PARLA_RATER=openai needs OPENAI_API_KEY"):
        run(SAMPLE)


@pytest.mark.django_db
def test_the_desk_exports_reviewed_answers_as_a_labelled_set_that_rater_eval_reads(
    client, teacher_user, make_user, tmp_path, settings
):
    from django.urls import reverse
    from django.utils import timezone

    from assessments.models import Assessment, Learner, Turn
    from assessments.tests.factories import make_session_with_assessment

    settings.PARLA_RATER = "offline"
    for name, language, teacher_level in (("ana", "es", "A2"), ("bo", "fr", ""), ("cy", "fr", "A1")):
        learner = Learner.objects.create(user=make_user(name), target_language=language)
        session, assessment = make_session_with_assessment(learner)
        Turn.objects.create(session=session, role=Turn.Role.TUTOR, text="Et hier ?", level="A2")
        Turn.objects.create(session=session, role=Turn.Role.LEARNER, text="", mode="spoken", level="A2")  # no words
        Turn.objects.create(session=session, role=Turn.Role.LEARNER, text="Hier je suis allé au cinéma.",
                            mode="written", level="A2")
        Assessment.objects.filter(pk=assessment.pk).update(teacher_level=teacher_level,
                                                           reviewed_at=timezone.now() if teacher_level else None)
    client.force_login(teacher_user)
    changelist = reverse("admin:assessments_assessment_changelist")
    selected = [a.pk for a in Assessment.objects.all()]
    response = client.post(changelist, {"action": "export_reviewed_answers", "_selected_action": selected})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert set(rows[0]) == {"language", "level", "text", "question"}
    # Per reviewed assessment, its answers in words with the teacher's level and the tutor's question.
    assert sorted((r["language"], r["level"], r["text"], r["question"]) for r in rows) == sorted([
        ("es", "A2", "Me llamo Ana.", "¿Cómo te llamas?"), ("es", "A2", "Hier je suis allé au cinéma.", "Et hier ?"),
        ("fr", "A1", "Me llamo Ana.", "¿Cómo te llamas?"), ("fr", "A1", "Hier je suis allé au cinéma.", "Et hier ?"),
    ])
    path = tmp_path / "reviewed.csv"
    path.write_bytes(response.content)
    printed = run(path)
    assert printed.startswith("rater offline: 4 texts") and "exact " in printed and "within one " in printed


def test_with_a_key_the_model_rater_is_measured_climbing_no_higher_than_needed(settings, monkeypatch):
    """The model rater (against a local stand-in of the Responses API that sustains up to B1) is asked
    each text from A1 up to the first level it does not sustain, with the text's question."""
    import json
    import threading

    from assessments.tests.test_grading import FakeResponsesAPI

    class UpToB1(FakeResponsesAPI):
        def response_body(self, request):
            asked = json.loads(request["input"][1]["content"])
            outcome = "sustained" if asked["level_probed"] in ("A1", "A2", "B1") else "breakdown"
            self.output_text = json.dumps({"outcome": outcome, "evidence": "x"})
            return super().response_body(request)

    api = UpToB1()
    thread = threading.Thread(target=api.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("OPENAI_BASE_URL", api.base_url)
        settings.PARLA_RATER, settings.OPENAI_API_KEY, settings.PARLA_RATER_MODEL = "openai", "sk-test", "gpt-test"
        printed = run(SAMPLE)
    finally:
        api.server.shutdown()
        api.server.server_close()
        thread.join(timeout=5)
    items = read_labelled(SAMPLE.open(newline="", encoding="utf-8"))
    assert printed.splitlines()[0] == f"rater openai:gpt-test: {len(items)} texts, {len(items)} rated"
    expected = agreement([("B1", i.level) for i in items])
    assert f"exact {expected.exact * 100:.1f} %" in printed and f"kappa {expected.kappa:.3f}" in printed
    asked = [json.loads(r["body"]["input"][1]["content"]) for r in api.requests]
    assert len(asked) == 4 * len(items)  # A1, A2, B1 sustained; B2 not: never C1 or C2
    assert {a["level_probed"] for a in asked} == {"A1", "A2", "B1", "B2"}
    assert {a["task"] for a in asked} == {i.question for i in items}  # the model is given the question

