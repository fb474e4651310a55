"""The browser wire protocol: every bad frame gets a clear, stable error code."""

import json

import pytest

from tutor.realtime.wire import ClientError
from tutor.realtime.wire import MAX_AUDIO_FRAME_BYTES, parse_audio, parse_control


def code_of(call, *args):
    with pytest.raises(ClientError) as info:
        call(*args)
    assert info.value.message  # always says what is wrong
    return info.value.code


def test_valid_control_messages_are_returned_clean():
    assert parse_control('{"type": "session.start", "extra": 1}') == {"type": "session.start"}
    assert parse_control(json.dumps({"type": "answer.text", "text": "  hola  "})) == {"type": "answer.text", "text": "hola"}
    assert parse_control(json.dumps({"type": "playback.flushed", "request_id": "flush_1", "played_ms": 40})) == {
        "type": "playback.flushed", "request_id": "flush_1", "played_ms": 40}
    report = {"type": "playback.report", "item_id": "item_1", "played_ms": 0, "kind": "start"}
    assert parse_control(json.dumps(report)) == report
    assert parse_control('{"type": "session.resume", "session_id": 42}') == {"type": "session.resume", "session_id": 42}


@pytest.mark.parametrize(
    "text, code",
    [
        ("{not json", "malformed"),
        ("[1, 2]", "malformed"),
        ('{"kind": "x"}', "malformed"),
        ('{"type": "launch.rockets"}', "unknown_type"),
        ('{"type": "answer.text"}', "missing_field"),
        ('{"type": "answer.text", "text": 5}', "bad_field"),
        ('{"type": "answer.text", "text": "   "}', "bad_field"),
        (json.dumps({"type": "answer.text", "text": "x" * 2001}), "bad_field"),
        ('{"type": "playback.report", "item_id": "i", "played_ms": -1}', "bad_field"),
        ('{"type": "playback.report", "item_id": "i", "played_ms": true}', "bad_field"),
        (json.dumps({"type": "playback.report", "item_id": "i" * 65, "played_ms": 1}), "bad_field"),
        ('{"type": "playback.report", "item_id": "i", "played_ms": 1, "kind": "paused"}', "bad_field"),
        (json.dumps({"type": "answer.text", "text": "a" * 9000}), "frame_too_large"),
        ('{"type": "session.resume"}', "missing_field"),
        ('{"type": "session.resume", "session_id": "42"}', "bad_field"),
        ('{"type": "session.resume", "session_id": 0}', "bad_field"),
        ('{"type": "session.resume", "session_id": true}', "bad_field"),
    ],
)
def test_bad_control_messages(text, code):
    assert code_of(parse_control, text) == code


def test_audio_frames_are_size_and_shape_checked():
    assert parse_audio(b"\x00\x01" * 2400) == b"\x00\x01" * 2400
    assert code_of(parse_audio, b"\x00" * (MAX_AUDIO_FRAME_BYTES + 2)) == "frame_too_large"
    assert code_of(parse_audio, b"\x00\x01\x02") == "bad_audio"


def test_every_server_event_the_readme_documents_is_built_by_wire_and_states_match():
    import re
    from pathlib import Path

    from tutor.realtime import wire

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("**JSON from the server:**", 1)[1].split("\n\n", 2)[1]
    documented = set()
    for row in table.splitlines()[2:]:
        documented.update(re.findall(r"`([a-z.]+)`", row.split("|")[1]))
    built = {
        wire.state(wire.State.READY)["type"],
        wire.audio_start("i", "marin", "tutor")["type"],
        wire.audio_end("i")["type"],
        wire.transcript("tutor", "i", "hola", final=True)["type"],
        wire.level("A1", {})["type"],
        wire.playback_flush("r")["type"],
        wire.assessing(0.5, 10)["type"],
        wire.assessment(1, "A1", {}, "s", "rules", "graded", False)["type"],
        wire.error("malformed", "m")["type"],
        wire.busy(1, 2.0)["type"],
        wire.session(7, resumed=True)["type"],
    }
    assert built == documented
    states_row = next(row for row in table.splitlines() if row.startswith("| `state`"))
    assert re.findall(r"`([a-z_]+)`", states_row.split("|")[2].split(";")[0])[1:] == [s.value for s in wire.State]


def test_a_client_error_becomes_the_one_error_event_shape():
    assert ClientError("bad_field", "nope").as_event() == {"type": "error", "code": "bad_field", "message": "nope"}


def test_every_close_code_has_the_same_value_in_the_pages_protocol_js():
    import re
    from pathlib import Path

    from tutor.realtime import wire

    js = (Path(__file__).resolve().parents[2] / "static/tutor/protocol.js").read_text()
    page = {name: int(value) for name, value in re.findall(r"export const (CLOSE_\w+) = (\d+);", js)}
    server = {name: getattr(wire, name) for name in dir(wire) if name.startswith("CLOSE_")}
    assert server and page == server
