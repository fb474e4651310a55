"""Unit tests of the simulator's pure parts: audio, VAD, persona, error mapping, knobs, command."""

from __future__ import annotations

import itertools
import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from assessments.cefr import LEVELS
from tutor.management.commands.realtime_simulator import Command, knobs_from_options
from tutor.realtime.simulator import KnobError, SimulatorKnobs
from tutor.realtime.audio import pcm_ms
from tutor.realtime.simulator import errors
from tutor.realtime.simulator.audio import (
    VOICE_F0_HZ,
    EnergyVad,
    estimate_voice,
    silence,
    speech_ms,
    synthesize,
    voiced_ms,
)
from tutor.realtime.simulator.events import CLIENT_EVENT_ADAPTER, parse_client_event
from tutor.realtime.simulator.persona import (
    PREAMBLES,
    QUESTIONS,
    LearnerTurn,
    ScriptedTutor,
    Speech,
    ToolCall,
    parse_instructions,
    probe_outcome,
    resolve_probe_shape,
    verbatim_text,
    wrong_language,
)
from tutor.realtime.simulator.deltas import chunk_interval, split_text

# --- audio ------------------------------------------------------------------------------------


@pytest.mark.parametrize("voice", sorted(VOICE_F0_HZ))
def test_estimate_voice_recovers_every_voice_from_200_ms(voice):
    pcm = synthesize("Bonjour, je m'appelle Claire et j'habite à Paris depuis longtemps.", voice, 3000)
    for start_ms in (0, 700, 1450, 2790):
        chunk = pcm[start_ms * 48 : (start_ms + 200) * 48]
        assert estimate_voice(chunk) == voice


def test_voices_are_well_separated_in_pitch():
    pitches = sorted(VOICE_F0_HZ.values())
    assert len(pitches) == 10
    assert min(b - a for a, b in zip(pitches, pitches[1:])) >= 15


def test_two_voices_produce_different_audio_for_the_same_text():
    assert synthesize("Hola", "alloy", 500) != synthesize("Hola", "cedar", 500)


def test_synthesized_length_follows_text_and_speed():
    text = "x" * 40
    assert speech_ms(text) == 40 * 65
    assert speech_ms(text, speed=0.5) == 2 * speech_ms(text)
    assert pcm_ms(synthesize(text, "marin", speech_ms(text))) == speech_ms(text)


def test_energy_vad_finds_speech_and_its_end():
    vad = EnergyVad(threshold=0.5, prefix_padding_ms=300, silence_duration_ms=500)
    events = vad.feed(silence(1000) + synthesize("hello there", "echo", 800) + silence(600))
    assert [e.kind for e in events] == ["speech_started", "speech_stopped"]
    assert events[0].audio_ms == 700  # onset 1000 ms minus 300 ms prefix padding
    assert 2300 <= events[1].audio_ms <= 2320  # last voiced frame + 500 ms of silence


def test_energy_vad_threshold_ignores_quiet_sound_and_silence():
    quiet = bytes(b for sample in range(2400) for b in int(200 * (-1) ** sample).to_bytes(2, "little", signed=True))
    assert EnergyVad(threshold=0.5).feed(quiet * 5 + silence(1000)) == []
    assert [e.kind for e in EnergyVad(threshold=0.05).feed(quiet * 5)] == ["speech_started"]
    assert voiced_ms(silence(500)) == 0 and voiced_ms(synthesize("hola", "echo", 500)) >= 450


# --- persona ------------------------------------------------------------------------------------


def test_banks_cover_every_language_and_level():
    # The simulator has no bank of learner sentences any more: it never puts words in a learner's mouth.
    for bank in (QUESTIONS,):
        assert {"es", "fr", "de", "it", "en"} <= set(bank)
        assert all(set(levels) == set(LEVELS) and all(levels.values()) for levels in bank.values())


def test_parse_instructions_reads_the_contract_markers():
    context = parse_instructions("Be kind.\nTarget language: IT\nCurrent CEFR level: C1\nRole: narrator\n")
    assert (context.language, context.level, context.narrator) == ("it", "C1", True)
    assert parse_instructions(None) == parse_instructions("no markers")
    assert verbatim_text("Summary:\nRead aloud verbatim: Hello, world.\nThanks") == "Hello, world."
    assert verbatim_text("nothing to read") is None


@pytest.mark.parametrize("true_level, level", list(itertools.product(LEVELS, LEVELS)))
def test_true_level_decides_every_probe(true_level, level):
    expected = "sustained" if LEVELS.index(level) <= LEVELS.index(true_level) else "breakdown"
    assert probe_outcome(level, LearnerTurn("text", "x"), true_level) == expected


def test_heuristic_thresholds_rise_with_the_level():
    eight_words = LearnerTurn("text", "one two three four five six seven eight")
    assert probe_outcome("A2", eight_words, None) == "sustained"
    assert probe_outcome("B1", eight_words, None) == "breakdown"
    assert probe_outcome("A1", LearnerTurn("audio", speech_ms=900), None) == "sustained"
    assert probe_outcome("B2", LearnerTurn("audio", speech_ms=3000), None) == "breakdown"


def test_tutor_probes_after_a_learner_turn_and_asks_otherwise():
    tutor = ScriptedTutor(rng=random.Random(1), true_level="A2")
    tools = [{"type": "function", "name": "record_probe"}]
    instructions = "Target language: es\nCurrent CEFR level: B1"
    (first,) = tutor.plan(instructions, None, tools, "auto", out_of_band=False)
    assert isinstance(first, Speech) and first.text.startswith("¡Hola!")
    tutor.learner_turn(LearnerTurn("text", "Iría a Japón"))
    (probe,) = tutor.plan(instructions, None, tools, "auto", out_of_band=False)  # the default shape: "call"
    assert isinstance(probe, ToolCall) and probe.arguments["level"] == "B1"
    assert probe.arguments["outcome"] == "breakdown"
    (after,) = tutor.plan(instructions, None, tools, "auto", out_of_band=False)
    assert isinstance(after, Speech)
    tutor.learner_turn(LearnerTurn("text", "Sí"))
    (unprobed,) = tutor.plan(instructions, None, tools, "none", out_of_band=False)  # tool_choice none
    assert isinstance(unprobed, Speech)


TOOLS = [{"type": "function", "name": "record_probe"}]
ES_B1 = "Target language: es\nCurrent CEFR level: B1"


def answered(tutor: ScriptedTutor, instructions: str = ES_B1) -> tuple:
    """The tutor's response to one more learner answer (after its greeting)."""
    if tutor.spoken == 0:
        tutor.plan(instructions, None, TOOLS, "auto", out_of_band=False)
    tutor.learner_turn(LearnerTurn("text", "Si ganara un viaje, iría a Japón con mis amigos."))
    return tutor.plan(instructions, None, TOOLS, "auto", out_of_band=False)


@pytest.mark.parametrize(
    "model, shape",
    [("gpt-realtime-2", "preamble_call_answer"), ("gpt-realtime-2.1-mini", "preamble_call_answer"),
     ("gpt-realtime-1.5", "call"), ("m", "call")],
)
def test_the_probe_shape_follows_the_model_family(model, shape):
    assert resolve_probe_shape("auto", model) == shape
    assert resolve_probe_shape("call_answer", model) == "call_answer"  # an explicit knob wins


def test_the_gpt_realtime_2_shape_is_a_preamble_the_call_and_the_answer_in_one_response():
    tutor = ScriptedTutor(rng=random.Random(1), true_level="B1", probe_shape="preamble_call_answer")
    preamble, call, answer = answered(tutor)
    assert isinstance(preamble, Speech) and preamble.text in PREAMBLES["es"]
    assert isinstance(call, ToolCall) and call.arguments["outcome"] == "sustained"
    assert isinstance(answer, Speech) and any(q in answer.text for q in QUESTIONS["es"]["B1"])
    call_first = ScriptedTutor(rng=random.Random(1), true_level="B1", probe_shape="call_answer")
    assert [type(part) for part in answered(call_first)] == [ToolCall, Speech]


@pytest.mark.parametrize("shape", ["call", "preamble_call_answer"])
def test_a_tutor_that_skips_the_call_every_second_answer_just_speaks_on(shape):
    tutor = ScriptedTutor(rng=random.Random(1), true_level="B1", probe_shape=shape, skip_probe_every=2)
    calls = [sum(isinstance(part, ToolCall) for part in answered(tutor)) for _ in range(4)]
    assert calls == [1, 0, 1, 0]
    tutor.learner_turn(LearnerTurn("text", "Sí."))
    call = next(p for p in tutor.plan(ES_B1, None, TOOLS, "auto", out_of_band=False) if isinstance(p, ToolCall))
    assert call.arguments["evidence"].startswith("1 words")  # the skipped answer is not carried into it


def test_a_tutor_that_repeats_the_call_makes_it_twice_in_one_response():
    tutor = ScriptedTutor(rng=random.Random(1), true_level="B1", probe_shape="call_answer", repeat_probe_every=1)
    first, second, answer = answered(tutor)
    assert first == second and isinstance(first, ToolCall) and isinstance(answer, Speech)
    plain = ScriptedTutor(rng=random.Random(1), true_level="B1", probe_shape="call", repeat_probe_every=1)
    assert [type(part) for part in answered(plain)] == [ToolCall, ToolCall]


def test_a_tutor_that_answers_in_the_wrong_language_does_so_every_nth_reply():
    tutor = ScriptedTutor(rng=random.Random(1), true_level="B1", probe_shape="call_answer", wrong_language_every=2)
    answers = [answered(tutor)[-1].text for _ in range(4)]
    english = [any(q in text for q in QUESTIONS["en"]["B1"]) for text in answers]
    spanish = [any(q in text for q in QUESTIONS["es"]["B1"]) for text in answers]
    assert english == [False, True, False, True] and spanish == [True, False, True, False]
    assert wrong_language("en") == "es" and wrong_language("de") == "en"


@pytest.mark.parametrize(
    "query, message",
    [({"probe_shape": "parallel"}, "probe_shape must be one of"), ({"skip_probe_every": "-1"}, "must be >= 0")],
)
def test_misbehaviour_knobs_are_checked(query, message):
    with pytest.raises(KnobError, match=message):
        SimulatorKnobs().with_overrides(query)
    knobs = SimulatorKnobs().with_overrides({"repeat_probe_every": "3", "probe_shape": "call_answer"})
    assert (knobs.repeat_probe_every, knobs.probe_shape) == (3, "call_answer")


def test_pace_is_a_speed():
    assert chunk_interval(1.0) == 0.1  # 100 ms of audio per delta, in real time
    assert chunk_interval(4.0) == 0.025
    assert chunk_interval(0) == 0.0


@given(st.text(alphabet="ab ,.", min_size=1, max_size=60), st.integers(min_value=1, max_value=40))
def test_split_text_pieces_join_back(text, parts):
    pieces = split_text(text, parts)
    assert len(pieces) == parts and "".join(pieces) == text


# --- error mapping -------------------------------------------------------------------------------


def test_format_duration_names_the_maximum():
    assert errors.format_duration(3600) == "60 minutes"
    assert errors.format_duration(60) == "1 minute"
    assert errors.format_duration(0.5) == "0.5 seconds"
    assert errors.session_expired(3600).message == "Your session hit the maximum duration of 60 minutes."


USER_BOGUS_PART = {"type": "message", "role": "user", "content": [{"type": "bogus"}]}
LOUD_VAD = {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "loud_vad"}}}}
STRICT_TOOL = {"tools": [{"type": "function", "name": "f", "strict": True}]}


@pytest.mark.parametrize(
    "event, code, param",
    [
        ({"type": "conversation.item.create", "item": USER_BOGUS_PART}, "invalid_value", "item.content[0].type"),
        (
            {"type": "conversation.item.create", "item": {"type": "function_call_output", "output": "x"}},
            "missing_required_parameter",
            "item.call_id",
        ),
        ({"type": "conversation.item.create", "item": {"type": "nope"}}, "invalid_value", "item.type"),
        (
            {"type": "conversation.item.truncate", "item_id": "i", "content_index": "zero", "audio_end_ms": 1},
            "invalid_type",
            "content_index",
        ),
        ({"type": "session.update", "session": LOUD_VAD}, "invalid_value", "session.audio.input.turn_detection.type"),
        ({"type": "session.update"}, "missing_required_parameter", "session"),
        ({"type": "response.create", "response": STRICT_TOOL}, "unknown_parameter", "response.tools[0].strict"),
    ],
)
def test_validation_errors_name_the_offending_parameter(event, code, param):
    with pytest.raises(errors.RealtimeAPIError) as caught:
        parse_client_event(json.dumps(event))
    assert (caught.value.code, caught.value.param) == (code, param)
    # The real API names the parameter in the message, except for "Invalid value: 'x'. Supported ...".
    message = caught.value.message
    assert message.startswith("Invalid value: '") if code == "invalid_value" else param in message


def test_one_parse_path_is_the_official_union():
    parsed = parse_client_event('{"type": "response.cancel", "event_id": "e1"}')
    assert type(parsed.model).__name__ == "ResponseCancelEvent" and parsed.raw["event_id"] == "e1"
    with pytest.raises(ValidationError):
        CLIENT_EVENT_ADAPTER.validate_python({"type": "response.cancel", "response_id": 5})


# --- knobs and command ---------------------------------------------------------------------------


def test_knob_overrides_parse_by_type():
    values = {"pace": "0", "latency_ms": "50", "drop_after_events": "7", "true_level": "B2", "validate_output": "yes"}
    knobs = SimulatorKnobs().with_overrides({**values, "model": "ignored"})
    assert (knobs.pace, knobs.latency_ms, knobs.drop_after_events, knobs.true_level, knobs.validate_output) == (
        0.0, 50.0, 7, "B2", True,
    )
    assert knobs.with_overrides({"drop_after_events": "none"}).drop_after_events is None


@pytest.mark.parametrize(
    "values", [{"pace": "-1"}, {"seed": "x"}, {"true_level": "D1"}, {"api_key": "k"}, {"validate_output": "maybe"}]
)
def test_bad_knob_values_are_refused(values):
    with pytest.raises(KnobError):
        SimulatorKnobs().with_overrides(values)


def test_management_command_builds_knobs_from_flags():
    parser = Command().create_parser("manage.py", "realtime_simulator")
    options = vars(parser.parse_args(["--port", "9000", "--pace", "0.5", "--true-level", "B1", "--api-key", "sk-x"]))
    knobs = knobs_from_options(options)
    assert (options["host"], options["port"]) == ("127.0.0.1", 9000)
    assert (knobs.pace, knobs.true_level, knobs.api_key, knobs.latency_ms) == (0.5, "B1", "sk-x", 0.0)


def test_an_answer_whose_call_was_never_made_is_recorded_by_the_next_reply():
    """The learner spoke over the preamble: the reply ended before its call."""
    tutor = ScriptedTutor(rng=random.Random(1), true_level="B1", probe_shape="preamble_call_answer")
    answered(tutor)  # planned: preamble, call, answer
    tutor.call_not_made()
    tutor.learner_turn(LearnerTurn("text", "y también me gusta nadar"))
    call = next(p for p in tutor.plan(ES_B1, None, TOOLS, "auto", out_of_band=False) if isinstance(p, ToolCall))
    assert call.arguments["evidence"].startswith("15 words")  # both answers (10 + 5 words), judged together
    tutor.call_not_made()  # this reply was cut before its call too
    tutor.call_not_made()  # but an answer is restored once
    assert tutor.unprobed_turn.words == 15
