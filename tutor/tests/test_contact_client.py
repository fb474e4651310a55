"""First contact with the real Realtime API (issue 25), at the client: errors that name no client event,
a later API version, a transcription configuration the API rejects. Against the bundled simulator."""

from __future__ import annotations

import asyncio
import logging

import pytest

from assessments.transcript import Transcript
from tutor import persona
from tutor.realtime import correlation
from tutor.realtime.client import RealtimeClient, RealtimeRequestError
from tutor.realtime.logs import bind
from tutor.runtime.connection import TutorConnection
from tutor.runtime.phase import SessionPhase
from tutor.testing.realtime_client import start_simulator
from tutor.upstream import Upstream


async def connected(sim, **kwargs) -> RealtimeClient:
    client = RealtimeClient(sim.url, model="gpt-realtime-2.1", validate_sent=True, **kwargs)
    await client.open(persona.narrator_session_config("sage"), 5)
    return client


async def test_errors_without_event_id_still_answer_the_request_that_caused_them():
    """Before: the cancel waited for an answer it had already had, and timed out (the error named no
    event_id, so nothing matched it); the refused truncate likewise."""
    async with start_simulator(error_event_ids=False) as sim:
        client = await connected(sim)
        try:
            # A cancel with nothing active: response_cancel_not_active means it had already finished.
            assert await client.cancel_response("resp_gone", timeout=3) == "completed"
            assert client.tolerated_errors == 1
            # A truncate of an item that does not exist: refused, and the refusal reaches the request.
            with pytest.raises(RealtimeRequestError) as refused:
                await client.request(
                    {"type": "conversation.item.truncate", "item_id": "item_nope", "content_index": 0, "audio_end_ms": 0},
                    "conversation.item.truncated", timeout=3,
                )
            assert refused.value.code == "item_truncate_invalid_item_id"
            # A second response.create while one is active: the tracker learns that it started nothing.
            await client.request({"type": "response.create"}, "response.created", 3)
            second = client.expect("error")
            await client.send({"type": "response.create"})
            error = await client.wait(second, 3)
            assert error.error.code == "conversation_already_has_active_response" and error.error.event_id
            assert client.tracker.pending_creates == 0
        finally:
            await client.close()


def test_an_error_is_attributed_by_its_code_then_its_param_then_its_message():
    assert correlation.answered_types("response_cancel_not_active", None, "") == ("response.cancel",)
    assert correlation.answered_types("invalid_value", "session.audio.input.transcription.model", "x") == ("session.update",)
    assert correlation.answered_types("invalid_value", None, "Audio content of 0ms is already shorter than 5ms") == (
        "conversation.item.truncate",)
    assert correlation.answered_types("server_error", None, "The server had an error") == ()
    unanswered = [("e1", "session.update"), ("e2", "response.cancel"), ("e3", "response.cancel")]
    assert correlation.attribute(("response.cancel",), unanswered) == "e2"  # the oldest: events are handled in order
    assert correlation.attribute(("conversation.item.delete",), unanswered) is None


async def test_a_later_api_version_never_leaves_a_response_in_progress():
    """Before: `response.done` with a reasoning item first was dropped as unparsable; the response stayed
    active for good (issue 25, finding 2)."""
    async with start_simulator(later_version=True) as sim:
        client = await connected(sim, strict_read=False)
        try:
            done = await client.request({"type": "response.create"}, "response.done", 5)
            assert [item.type for item in done.response.output] == ["reasoning", "message"]
            assert not client.tracker.has_active_response
            assert client.tracker.audio_finished(done.response.id)
            assert {r.event_type for r in client.lenient_reads} >= {"response.done", "session.updated"}
        finally:
            await client.close()


def test_the_transcription_field_shape_follows_the_model_family():
    from tutor.realtime.schemas import validate_client_event

    assert persona.transcription_config("gpt-transcribe", "es") == {"model": "gpt-transcribe", "languages": ["es"]}
    assert persona.transcription_config("gpt-live-transcribe", "fr") == {"model": "gpt-live-transcribe", "languages": ["fr"]}
    assert persona.transcription_config("gpt-realtime-whisper", "de") == {"model": "gpt-realtime-whisper", "language": "de"}
    assert persona.transcription_config("gpt-4o-transcribe", "it") == {"model": "gpt-4o-transcribe", "language": "it"}
    assert not persona.takes_turn_detection("gpt-live-transcribe") and persona.takes_turn_detection("gpt-transcribe")
    for model in ("gpt-transcribe", "gpt-realtime-whisper"):
        session = persona.tutor_session_config(target_language="es", native_language="en", level="B1", voice="marin",
                                               transcription_model=model, speed_beginner=0.85, speed_default=1.0)
        validate_client_event({"type": "session.update", "session": session})  # the openai models take both shapes


def test_the_fallback_steps_down_the_refused_part_only_and_stays():
    from tutor.realtime.fallback import TRANSCRIPTION, TURN_DETECTION, SessionShape, refused_part

    class Error:
        def __init__(self, message, param=None):
            self.message, self.param = message, param

    assert refused_part(Error("Turn detection is not supported for this transcription model.")) == TRANSCRIPTION
    assert refused_part(Error("Invalid value: 'semantic_vad'.", "session.audio.input.turn_detection.type")) == TURN_DETECTION
    assert refused_part(Error("Cannot update a conversation's voice if assistant audio is present.")) is None
    config = dict(target_language="es", native_language="en", voice="marin", transcription_model="gpt-live-transcribe",
                  speed_beginner=0.85, speed_default=1.0)
    shape = SessionShape()
    b1 = persona.tutor_session_config(level="B1", **config)
    seen = [shape.apply(b1)["audio"]["input"]["transcription"]]
    while shape.step_down(TRANSCRIPTION, b1):
        seen.append(shape.apply(b1)["audio"]["input"]["transcription"])
    assert seen == [
        {"model": "gpt-live-transcribe", "languages": ["es"]}, {"model": "gpt-live-transcribe", "language": "es"},
        {"model": "gpt-transcribe", "languages": ["es"]}, {"model": "gpt-transcribe", "language": "es"}, None,
    ]
    assert shape.apply(persona.tutor_session_config(level="A1", **config))["audio"]["input"]["transcription"] is None
    assert shape.step_down(TURN_DETECTION, shape.apply(b1))
    assert shape.apply(b1)["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert not shape.step_down(TURN_DETECTION, shape.apply(b1))
    assert b1["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"  # the original is left as it was


async def test_a_resumed_session_is_configured_with_the_fallback_its_first_session_took():
    """The fallback is the TutorConnection's (one object across resumes): the new upstream session is
    configured with the transcription the API accepted, at once. Before the port, the shape was applied
    twice on a resume and stepped past the accepted fallback (no transcription at all)."""
    def configuration() -> dict:
        return persona.tutor_session_config(
            target_language="es", native_language="en", level="A2", voice="marin",
            transcription_model="gpt-live-transcribe", speed_beginner=0.9, speed_default=1.0,
        )

    async with start_simulator(reject_transcription="gpt-live-transcribe") as sim:
        connection = TutorConnection(
            phase=SessionPhase(), transcript=Transcript(), log=bind(logging.getLogger(__name__)),
            step_timeout=5, upstream=Upstream(sim.url, None, "gpt-realtime-2.1", "simulator"),
            configuration=configuration,
        )
        try:
            await connection.start()
            first = connection.current
            accepted = sim.connections[0].session.config.transcription
            assert accepted["model"] == persona.TRANSCRIPTION_FALLBACK
            resumed = asyncio.Event()
            assert await connection.resume(on_resumed=lambda: asyncio.sleep(0, resumed.set()))
            assert resumed.is_set() and connection.current is not first
            assert sim.connections[-1].session.config.transcription == accepted
            # every refusal came from the first session: the resumed one was configured at once
            assert first.tracker.error_codes == ["invalid_value"] * 2 and connection.tracker.error_codes == []
        finally:
            await connection.close()
