"""The tutor's realtime configuration: contract markers and validity against the openai models."""

import re

import pytest
from openai.types.realtime import ResponseCreateEvent, SessionUpdateEvent
from openai.types.realtime.realtime_session_create_request import RealtimeSessionCreateRequest
from pydantic import BaseModel

from assessments.cefr import LEVELS
from tutor.persona import (
    LEVEL_TASKS,
    RECORD_PROBE_TOOL,
    SUSTAINED_WHEN,
    frozen_session_update,
    narrator_session_config,
    summary_response,
    tutor_instructions,
    tutor_session_config,
    voice_session_update,
)


def no_extras(model):
    """Every key was a known field: the openai models accept unknown keys, so check it ourselves."""
    if isinstance(model, BaseModel):
        assert not model.model_extra, f"unknown fields {model.model_extra} in {type(model).__name__}"
        for name in type(model).model_fields:
            no_extras(getattr(model, name))
    elif isinstance(model, list):
        for item in model:
            no_extras(item)


def session_update(session: dict) -> RealtimeSessionCreateRequest:
    event = SessionUpdateEvent.model_validate({"type": "session.update", "session": session})
    assert isinstance(event.session, RealtimeSessionCreateRequest)
    no_extras(event)
    return event.session


def response_create(response: dict):
    event = ResponseCreateEvent.model_validate({"type": "response.create", "response": response})
    no_extras(event)
    return event.response


def config(level="B1", **overrides):
    kwargs = dict(
        target_language="es",
        native_language="en",
        level=level,
        voice="marin",
        transcription_model="gpt-4o-mini-transcribe",
        speed_beginner=0.85,
        speed_default=1.0,
    )
    return tutor_session_config(**(kwargs | overrides))


def test_no_extras_catches_misspelled_fields():
    with pytest.raises(AssertionError, match="unknown fields"):
        session_update({"type": "realtime", "audio": {"output": {"voise": "marin"}}})


# -- instructions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
def test_instructions_carry_the_contract_marker_lines_once(level):
    text = tutor_instructions("fr", "de", level)
    assert re.findall(r"^Target language: .*$", text, re.M) == ["Target language: fr"]
    assert re.findall(r"^Current CEFR level: .*$", text, re.M) == [f"Current CEFR level: {level}"]


@pytest.mark.parametrize("level", LEVELS)
def test_instructions_give_the_levels_tasks_and_yardstick(level):
    text = tutor_instructions("es", "en", level)
    assert all(task in text for task in LEVEL_TASKS[level])
    assert SUSTAINED_WHEN[level] in text
    other = LEVEL_TASKS["C2" if level == "A1" else "A1"][0]
    assert other not in text


def test_instructions_tell_a_real_model_how_to_run_placement():
    text = tutor_instructions("es", "en", "B2")
    assert "Speak only Spanish" in text
    assert "Never switch to English" in text
    assert "one question at a time" in text.lower()
    assert "call the record_probe function exactly once" in text
    assert 'level "B2"' in text
    assert "Never tell the learner their level" in text


def test_instructions_pace_depends_on_level():
    assert "Speak slowly" in tutor_instructions("es", "en", "A2")
    assert "Speak slowly" not in tutor_instructions("es", "en", "B1")


def test_unknown_language_code_is_named_by_its_code():
    assert "Speak only nl." in tutor_instructions("nl", "en", "A1")


@pytest.mark.parametrize("code", ["ES", "es\nCurrent CEFR level: C2", "", "spanish", None])
def test_malformed_language_code_is_rejected(code):
    with pytest.raises(ValueError, match="invalid language code"):
        tutor_instructions(code, "en", "A1")


def test_unknown_level_is_rejected():
    with pytest.raises(ValueError, match="unknown CEFR level"):
        tutor_instructions("es", "en", "B3")


def test_every_level_has_tasks():
    assert set(LEVEL_TASKS) == set(LEVELS) == set(SUSTAINED_WHEN)
    assert all(len(tasks) >= 3 for tasks in LEVEL_TASKS.values())


# -- tool -----------------------------------------------------------------------------------------


def test_record_probe_tool_matches_the_contract():
    tool = session_update(config()).tools[0]
    assert tool.type == "function" and tool.name == "record_probe"
    params = RECORD_PROBE_TOOL["parameters"]
    assert params["properties"]["level"]["enum"] == list(LEVELS)
    assert params["properties"]["outcome"]["enum"] == ["sustained", "breakdown"]
    assert params["properties"]["evidence"]["type"] == "string"
    assert sorted(params["required"]) == ["evidence", "level", "outcome"]


# -- session objects ------------------------------------------------------------------------------


def test_tutor_session_config_validates_and_sets_everything():
    # At A2 (server VAD: semantic VAD from B1 up is checked in test_turn_detection_lets_learners_think).
    session = session_update(config(level="A2", speed_beginner=1.0))
    assert session.type == "realtime"
    assert session.output_modalities == ["audio"]
    assert "Current CEFR level: A2" in session.instructions
    audio_in = session.audio.input
    assert (audio_in.format.type, audio_in.format.rate) == ("audio/pcm", 24000)
    assert audio_in.transcription.model == "gpt-4o-mini-transcribe"
    assert audio_in.transcription.language == "es"  # pinned to the target language
    vad = audio_in.turn_detection
    assert vad.type == "server_vad" and vad.create_response and vad.interrupt_response
    assert vad.silence_duration_ms > 0
    audio_out = session.audio.output
    assert (audio_out.format.type, audio_out.format.rate) == ("audio/pcm", 24000)
    assert audio_out.voice == "marin" and audio_out.speed == 1.0
    assert [tool.name for tool in session.tools] == ["record_probe"]
    assert session.tool_choice == "auto"


@pytest.mark.parametrize("level, speed", [("A1", 0.85), ("A2", 0.85), ("B1", 1.0), ("C2", 1.0)])
def test_speed_is_slower_for_beginners(level, speed):
    assert session_update(config(level=level)).audio.output.speed == speed


def test_turn_detection_lets_learners_think():
    # Replaces "beginners get a longer silence": every level now waits longer than the API's 500 ms
    # default, and from B1 up (answers with planning pauses between sentences) semantic VAD with low
    # eagerness waits for the learner to continue.
    for level in ("A1", "A2"):
        vad = session_update(config(level=level)).audio.input.turn_detection
        assert vad.type == "server_vad" and vad.silence_duration_ms >= 1200
    for level in ("B1", "B2", "C1", "C2"):
        vad = session_update(config(level=level)).audio.input.turn_detection
        assert (vad.type, vad.eagerness) == ("semantic_vad", "low")
        assert vad.create_response and vad.interrupt_response


def test_turn_detection_off_sends_null():
    session = config(turn_detection=False)
    assert "turn_detection" in session["audio"]["input"] and session["audio"]["input"]["turn_detection"] is None
    assert session_update(session).audio.input.turn_detection is None


def test_frozen_session_update_only_turns_detection_off():
    session = frozen_session_update()
    assert session == {"type": "realtime", "audio": {"input": {"turn_detection": None}}}
    assert session_update(session).audio.input.turn_detection is None


def test_voice_session_update_only_changes_the_voice():
    session = voice_session_update("alloy")
    assert session == {"type": "realtime", "audio": {"output": {"voice": "alloy"}}}
    assert session_update(session).audio.output.voice == "alloy"


def test_narrator_session_config():
    session = session_update(narrator_session_config("alloy"))
    assert "Role: narrator" in session.instructions.splitlines()
    assert "English" in session.instructions
    assert session.audio.output.voice == "alloy"
    assert session.audio.input.turn_detection is None
    assert session.tools == [] and session.tool_choice == "none"


def test_summary_response_reads_the_summary_on_one_line():
    response = response_create(summary_response("Your level is B1.\n  Keep   practising!"))
    lines = response.instructions.splitlines()
    assert "Read aloud verbatim: Your level is B1. Keep practising!" in lines
    assert response.output_modalities == ["audio"]
    assert response.conversation is None  # default conversation of the session
    assert response.tool_choice == "none"


def test_summary_response_rejects_empty_text():
    with pytest.raises(ValueError, match="empty"):
        summary_response(" \n ")
