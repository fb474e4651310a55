"""Graders: the rules on plain data; the OpenAI grader over real HTTP against a local fake server."""

import asyncio
import json
import threading
import time
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from openai.lib._pydantic import to_strict_json_schema  # what the client sends for a `text_format`

from assessments.grading import (
    CRITERIA,
    GradeInput,
    GradeResult,
    Grader,
    OpenAIGrader,
    RulesGrader,
    get_grader,
    grade_by_rules,
)
from assessments.grading.openai_grader import CEFRAssessment
from assessments.cefr import LEVELS, level_index
from assessments.placement import Placement, ProbeRecord
from assessments.testing import TimedGrader

ASSESSMENT_SCHEMA = to_strict_json_schema(CEFRAssessment)

S, B = "sustained", "breakdown"

SPANISH_B1 = (
    "Me llamo Ana, vivo en Madrid con mi familia y trabajo en una oficina.",
    "El año pasado fui a Portugal con mis amigos, visitamos Lisboa y comimos mucho pescado.",
    "Me gustaría aprender a cocinar mejor porque mi abuela cocinaba muy bien. ¿Y tú cocinas?",
    "Creo que las ciudades grandes son interesantes pero también son caras y ruidosas.",
)


def grade_input(level="B1", floor="B1", ceiling="B2", partial=False, end_reason="ceiling", probes=None,
                learner_turns=SPANISH_B1, tutor_turns=("¿Cómo te llamas?",)):
    if probes is None:
        probes = (
            ProbeRecord("A1", S), ProbeRecord("A1", S), ProbeRecord("A2", S), ProbeRecord("A2", S),
            ProbeRecord("B1", S), ProbeRecord("B1", S), ProbeRecord("B2", B, "long pause"), ProbeRecord("B2", B),
        )
    return GradeInput("es", "en", level, floor, ceiling, partial, end_reason, tuple(probes),
                      tuple(learner_turns), tuple(tutor_turns))


def steps(a, b):
    return abs(level_index(a) - level_index(b))


def levels(result):
    """criterion -> level of the criteria that were assessed (the others are "not assessed")."""
    return {c: v["level"] for c, v in result.criteria.items() if v["level"] is not None}


# -- interface ------------------------------------------------------------------------------------


async def test_base_grader_names_the_missing_method():
    with pytest.raises(NotImplementedError, match=r"subclasses of Grader must implement grade\(\)"):
        await Grader().grade(grade_input())


def test_grade_input_from_placement():
    p = Placement()
    for level in ("A1", "A1", "A2"):
        p.record(level, S, "ok")
    p.finish_early("time_cap")
    data = GradeInput.from_placement(p, target_language="es", native_language="en", learner_turns=["Hola"])
    assert (data.level, data.floor, data.ceiling, data.partial, data.end_reason) == ("A1", "A1", None, True, "time_cap")
    assert data.probes == p.probes and data.learner_turns == ("Hola",) and data.tutor_turns == ()
    assert not data.below_floor


# -- rules ----------------------------------------------------------------------------------------


async def test_rules_grader_result():
    result = await RulesGrader().grade(grade_input())
    assert result.level == "B1" and result.grader == "rules"
    assert tuple(result.criteria) == (*CRITERIA, "phonology")
    assert tuple(levels(result)) == CRITERIA  # phonology: a transcript cannot show it
    assert all(steps(v, "B1") <= 1 for v in levels(result).values())
    assert all(v["evidence"] and v["confidence"] in ("low", "medium", "high") for v in result.criteria.values()
               if v["level"])
    assert "B1, Threshold" in result.summary
    assert "Your strength is" in result.summary and "next step" in result.summary
    assert 2 <= result.summary.count(". ") + 1 <= 5
    assert "\n" not in result.summary and "provisional" not in result.summary


def test_rules_are_deterministic():
    assert grade_by_rules(grade_input()) == grade_by_rules(grade_input())


@pytest.mark.parametrize("level", LEVELS)
def test_rules_never_override_placement_and_stay_within_one_level(level):
    for turns in [(), ("sí",) * 10, (" ".join(f"palabra{i}" for i in range(120)) + "?",) * 5]:
        result = grade_by_rules(grade_input(level=level, floor=level, learner_turns=turns))
        assert result.level == level
        assert all(steps(v, level) <= 1 for v in levels(result).values()), result.criteria


def test_minimal_answers_pull_fluency_and_interaction_down():
    result = grade_by_rules(grade_input(level="B2", floor="B2", ceiling="C1", learner_turns=("sí", "no", "no sé")))
    assert levels(result)["fluency"] == "B1" and levels(result)["interaction"] == "B1"


def test_long_varied_answers_with_questions_lift_transcript_criteria():
    rich = tuple(" ".join(f"w{t}x{i}" for i in range(40)) + " ¿verdad?" for t in range(6))
    # Cut short at A2 (no ceiling found): one above the level is not contradicted by any breakdown.
    result = grade_by_rules(grade_input(level="A2", floor="A2", ceiling=None, partial=True, end_reason="time_cap",
                                        learner_turns=rich))
    assert {levels(result)[c] for c in ("range", "fluency", "coherence", "interaction")} == {"B1"}


def test_criteria_never_reach_the_ceiling_the_learner_broke_down_at():
    # The card of the issue: overall A2 with accuracy and fluency B1, after breaking down at B1.
    rich = tuple(" ".join(f"w{t}x{i}" for i in range(40)) + " ¿verdad?" for t in range(6))
    result = grade_by_rules(grade_input(level="A2", floor="A2", ceiling="B1", learner_turns=rich))
    assert set(levels(result).values()) <= {"A1", "A2"}


def test_no_transcript_leaves_transcript_criteria_not_assessed():
    # No words, no evidence: "not assessed", never a level guessed from the rating.
    result = grade_by_rules(grade_input(learner_turns=()))
    assert all(result.criteria[c]["level"] is None for c in ("range", "fluency", "coherence", "interaction"))
    # Accuracy too (issue 28): the only judgement with evidence here is a breakdown's "long pause", which
    # shows no accuracy at any level (before, it was quoted as the evidence of "accuracy B1").
    assert levels(result) == {}
    assert "Your strength" not in result.summary


@pytest.mark.parametrize(
    "b1, b2, accuracy",
    [
        ((S, S), (B, B), "B1"),  # the expected profile
        ((S, S), (S, B, B), "B2"),  # partly sustains the next level
        ((S, B, S), (B, B), "A2"),  # shaky on the way to the rating
        ((S, B, S), (B, S, B), "B1"),
    ],
)
def test_accuracy_follows_probe_consistency_around_the_rating(b1, b2, accuracy):
    probes = [ProbeRecord("B1", o, "ok") for o in b1] + [ProbeRecord("B2", o, "ok") for o in b2]
    # No ceiling (cut short): B2 for accuracy contradicts no breakdown at B2.
    data = grade_input(probes=probes, ceiling=None, partial=True, end_reason="time_cap")
    assert levels(grade_by_rules(data))["accuracy"] == accuracy


def test_below_floor_summary_says_not_yet_a1():
    data = grade_input(level="A1", floor=None, ceiling="A1", probes=[ProbeRecord("A1", B)] * 2,
                       learner_turns=("hola",))
    result = grade_by_rules(data)
    assert result.level == "A1" and set(levels(result).values()) <= {"A1"}
    assert "working towards level A1, Breakthrough" in result.summary
    assert "not yet sustaining A1" in result.summary


def test_partial_summary_is_provisional():
    result = grade_by_rules(grade_input(partial=True, end_reason="time_cap", ceiling=None))
    assert "provisional" in result.summary and "B1, Threshold" in result.summary


def test_top_level_summary():
    result = grade_by_rules(grade_input(level="C2", floor="C2", ceiling=None, end_reason="top",
                                        probes=[ProbeRecord("C2", S)] * 2))
    assert "C2, Mastery" in result.summary and "keep your level sharp" in result.summary


def test_summary_strength_and_next_step_differ():
    result = grade_by_rules(grade_input())
    strength = result.summary.split("Your strength is ")[1].split(":")[0]
    assert strength in CRITERIA
    from assessments.grading.rules import NEXT_STEPS
    advice = [c for c in CRITERIA if NEXT_STEPS[c] in result.summary]
    assert len(advice) == 1 and advice[0] != strength


def test_unknown_rating_is_rejected():
    with pytest.raises(ValueError, match="unknown CEFR level"):
        grade_by_rules(grade_input(level="Z9"))


# -- parsing the model's output -------------------------------------------------------------------


QUOTE = "visitamos Lisboa y comimos mucho pescado"  # words of SPANISH_B1


def model_json(level="B1", criteria=None, feedback="Well done.", disagreement=""):
    criteria = criteria or {c: level for c in CRITERIA}
    criteria = {c: v if isinstance(v, dict) else {"level": v, "evidence": QUOTE, "confidence": "medium"}
                for c, v in criteria.items()}
    return json.dumps({"level": level, "criteria": criteria, "feedback": feedback, "disagreement": disagreement})


def parse_assessment(text: str) -> dict:
    """The model's output as the grader reads it, through the one output model."""
    return CEFRAssessment.model_validate_json(text).model_dump()


def test_parse_assessment_accepts_valid_output_and_flattens_the_summary():
    parsed = parse_assessment(model_json(feedback="Line one.\nLine two."))
    assert parsed["level"] == "B1" and parsed["feedback"] == "Line one. Line two."


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        model_json(level="B3"),
        json.dumps({"level": "B1", "criteria": {"range": "B1"}, "feedback": "x", "disagreement": ""}),
        model_json(criteria={c: {"level": "X", "evidence": "", "confidence": "low"} for c in CRITERIA}),
        model_json(criteria={c: {"level": "B1", "evidence": "", "confidence": "sure"} for c in CRITERIA}),
        model_json(feedback="  "),
    ],
)
def test_parse_assessment_rejects_invalid_output(text):
    with pytest.raises(ValueError):
        parse_assessment(text)


def test_schema_is_strict_compatible():
    # Strict structured outputs need every property required and no additional properties.
    for obj in (ASSESSMENT_SCHEMA, *ASSESSMENT_SCHEMA["$defs"].values()):
        assert obj["additionalProperties"] is False and set(obj["required"]) == set(obj["properties"])


def test_schema_asks_for_a_cefr_level_overall_and_per_criterion():
    criteria = ASSESSMENT_SCHEMA["$defs"]["Criteria"]["properties"]
    assert tuple(criteria) == CRITERIA
    assert ASSESSMENT_SCHEMA["properties"]["level"]["enum"] == list(LEVELS)
    one = ASSESSMENT_SCHEMA["$defs"]["CriterionAssessment"]["properties"]
    # A level, or null when the conversation does not show the aspect; a quote; a confidence.
    assert one["level"]["anyOf"] == [{"enum": list(LEVELS), "type": "string"}, {"type": "null"}]
    assert one["evidence"]["type"] == "string" and one["confidence"]["enum"] == ["low", "medium", "high"]


# -- OpenAI grader over HTTP ----------------------------------------------------------------------


class FakeResponsesAPI:
    """A local stand-in for POST /v1/responses; each test sets what it answers."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status = 200
        self.output_text = model_json()
        self.delay = 0.0
        self.released = threading.Event()  # set at teardown so a slow handler returns at once
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                api.released.wait(api.delay)
                payload = api.response_body(body) if api.status == 200 else {
                    "error": {"message": "boom", "type": "server_error", "code": None, "param": None}
                }
                data = json.dumps(payload).encode()
                self.send_response(api.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def response_body(self, request):
        return {
            "id": "resp_test",
            "object": "response",
            "created_at": int(time.time()),
            "model": request["model"],
            "status": "completed",
            "output": [
                {
                    "type": "message",
                    "id": "msg_test",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": self.output_text, "annotations": []}],
                }
            ],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "text": {"format": request["text"]["format"]},
        }


@pytest.fixture
def fake_api():
    api = FakeResponsesAPI()
    thread = threading.Thread(target=api.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield api
    api.released.set()
    api.server.shutdown()
    api.server.server_close()
    thread.join(timeout=5)


def openai_grader(api, timeout=5.0):
    return OpenAIGrader(api_key="sk-test", model="gpt-test", timeout=timeout, base_url=api.base_url, max_retries=0)


async def test_openai_grader_success_sends_a_structured_output_request(fake_api):
    criteria = {"range": "B1", "accuracy": "A2", "fluency": "B2", "interaction": "B1", "coherence": "B1"}
    fake_api.output_text = model_json(level="B2", criteria=criteria, feedback="Great stories.\nKeep going.",
                                      disagreement="Long fluent answers at B1.")
    data = grade_input()
    result = await openai_grader(fake_api).grade(data)

    # The level is the floor: the model's B2 is kept for the teacher, never applied.
    assert result.level == "B1" and result.grader_level == "B2"
    assert "Long fluent answers at B1." in result.flag
    assert levels(result) == {**criteria, "fluency": "B1"}  # B2 is the ceiling: shown as B1, and flagged
    assert "fluency B2" in result.flag
    # The model's quote as every quote is shown: in one pair of quotation marks (issue 28).
    assert result.criteria["range"] == {"level": "B1", "evidence": f"\u201c{QUOTE}\u201d", "confidence": "medium"}
    assert result.criteria["phonology"]["level"] is None
    assert result.summary == "Your speaking level is B1, Threshold. Great stories. Keep going."
    assert result.grader == "openai:gpt-test"

    [request] = fake_api.requests
    assert request["path"] == "/v1/responses"
    assert request["headers"]["authorization"] == "Bearer sk-test"
    body = request["body"]
    assert body["model"] == "gpt-test"
    assert body["text"]["format"] == {
        "type": "json_schema", "name": "cefr_assessment", "strict": True, "schema": ASSESSMENT_SCHEMA,
    }
    [developer, user] = body["input"]
    assert developer["role"] == "developer" and "CEFR" in developer["content"]
    sent = json.loads(user["content"])
    assert [t["text"] for t in sent["conversation"]] == list(data.learner_turns)
    assert sent["placement"]["level"] == "B1" and sent["target_language"] == "Spanish"
    assert sent["probes"][6] == {"level": "B2", "outcome": "breakdown", "evidence": "long pause"}


async def test_openai_grader_clamps_a_level_more_than_one_step_away(fake_api):
    fake_api.output_text = model_json(level="C2", feedback="You are really at C2 level.")
    result = await openai_grader(fake_api).grade(grade_input())
    assert result.level == "B1" and result.grader_level == "C2"
    assert set(levels(result).values()) == {"B1"}  # within the band: below the ceiling B2
    assert "B1, Threshold" in result.summary and "C2" not in result.summary  # feedback naming C2 replaced
    assert "another level" in result.flag
    assert result.grader == "openai:gpt-test"


async def test_openai_grader_malformed_output_falls_back_to_rules(fake_api):
    fake_api.output_text = '{"level": "B1", "criteria": '
    data = grade_input()
    result = await openai_grader(fake_api).grade(data)
    assert result.grader == "rules (fallback: bad output)"
    assert (result.level, result.criteria, result.summary) == (
        grade_by_rules(data).level, grade_by_rules(data).criteria, grade_by_rules(data).summary,
    )


async def test_openai_grader_invalid_level_falls_back_to_rules(fake_api):
    fake_api.output_text = model_json(level="B3")
    result = await openai_grader(fake_api).grade(grade_input())
    assert result.grader == "rules (fallback: bad output)" and result.level == "B1"


async def test_openai_grader_http_error_falls_back_to_rules(fake_api):
    fake_api.status = 500
    result = await openai_grader(fake_api).grade(grade_input())
    assert result.grader == "rules (fallback: HTTP 500)" and result.level == "B1"
    assert len(fake_api.requests) == 1  # max_retries=0: no retry


async def test_openai_grader_slow_server_times_out_to_rules(fake_api):
    fake_api.delay = 10.0
    started = time.monotonic()
    result = await openai_grader(fake_api, timeout=0.3).grade(grade_input())
    assert time.monotonic() - started < 2.0
    assert result.grader == "rules (fallback: timeout)" and result.level == "B1"


async def test_openai_grader_unreachable_server_falls_back_to_rules():
    grader = OpenAIGrader(api_key="sk-test", model="gpt-test", timeout=5.0,
                          base_url="http://127.0.0.1:9/v1", max_retries=0)
    result = await grader.grade(grade_input())
    assert result.grader == "rules (fallback: connection)"


async def test_openai_grader_cancellation_propagates(fake_api):
    fake_api.delay = 10.0
    task = asyncio.create_task(openai_grader(fake_api).grade(grade_input()))
    while not fake_api.requests:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_fallback_labels_fit_the_assessment_column():
    from assessments.models import Assessment

    width = Assessment._meta.get_field("grader").max_length
    for reason in ("timeout", "HTTP 503", "connection", "bad output", "error"):
        assert len(f"rules (fallback: {reason})") <= width


# -- timed stand-in and factory -------------------------------------------------------------------


async def test_timed_grader_takes_its_time_then_delegates():
    grader = TimedGrader(0.2)
    started = time.monotonic()
    result = await grader.grade(grade_input())
    assert time.monotonic() - started >= 0.2
    assert result == grade_by_rules(grade_input())


async def test_timed_grader_wraps_any_grader():
    class Fixed(Grader):
        async def grade(self, data):
            return GradeResult("C1", {c: "C1" for c in CRITERIA}, "Fixed.", "fixed")

    result = await TimedGrader(0, Fixed()).grade(grade_input())
    assert result.grader == "fixed" and result.level == "C1"


def test_get_grader_rules(settings):
    settings.PARLA_GRADER = "rules"
    assert type(get_grader()) is RulesGrader


def test_get_grader_openai(settings):
    settings.PARLA_GRADER = "openai"
    settings.OPENAI_API_KEY = "sk-x"
    settings.PARLA_GRADER_MODEL = "gpt-4.1-mini"
    settings.PARLA_GRADER_TIMEOUT = 7.5
    grader = get_grader()
    assert isinstance(grader, OpenAIGrader)
    assert (grader.api_key, grader.model, grader.timeout) == ("sk-x", "gpt-4.1-mini", 7.5)


@pytest.mark.parametrize("kind, key, message", [("openai", "", "needs OPENAI_API_KEY"), ("magic", "k", "'magic'")])
def test_get_grader_rejects_bad_configuration(settings, kind, key, message):
    from django.core.exceptions import ImproperlyConfigured

    settings.PARLA_GRADER, settings.OPENAI_API_KEY = kind, key
    with pytest.raises(ImproperlyConfigured, match=message):
        get_grader()


def test_grading_module_imports_without_django():
    import subprocess
    import sys

    code = "import sys, assessments.grading; assert 'django.conf' not in sys.modules"
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env={"PYTHONPATH": str(root)})


async def test_feedback_can_be_asked_in_the_native_language_with_examples_in_the_target_language(fake_api):
    from dataclasses import replace

    await openai_grader(fake_api).grade(replace(grade_input(), native_language="fr", feedback_language="fr"))
    [developer, user] = fake_api.requests[0]["body"]["input"]
    assert "Write it in French" in developer["content"] and "example in Spanish" in developer["content"]
    assert json.loads(user["content"])["feedback_language"] == "French"
    await openai_grader(fake_api).grade(grade_input())  # the default
    assert "Write it in English" in fake_api.requests[1]["body"]["input"][0]["content"]
