"""Conformance of the bundled Realtime simulator, driven by a raw `websockets` client.

Every server event the client receives is validated against the official `openai` models
(`RealtimeServerEvent`) by RealtimeTestClient.recv, and `start_simulator` fails a test whose
simulator emitted any event (read or not) that does not validate.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from assessments.cefr import LEVELS, next_level
from tutor.realtime.simulator.audio import estimate_voice, silence, speech_ms, synthesize
from tutor.realtime.simulator.background import BackgroundSimulator
from tutor.realtime.simulator.knobs import SimulatorKnobs
from tutor.realtime.simulator.persona import QUESTIONS
from tutor.testing.realtime_client import RealtimeTestClient, start_simulator

# The response lifecycle of DESIGN section 2, without the repeated deltas.
AUDIO_RESPONSE_ORDER = [
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]
DELTAS = {"response.output_audio.delta", "response.output_audio_transcript.delta"}
PROBE_TOOL = {
    "type": "function",
    "name": "record_probe",
    "description": "Record the outcome of one probe.",
    "parameters": {
        "type": "object",
        "properties": {
            "level": {"type": "string", "enum": list(LEVELS)},
            "outcome": {"type": "string", "enum": ["sustained", "breakdown"]},
            "evidence": {"type": "string"},
        },
        "required": ["level", "outcome", "evidence"],
    },
}
NO_VAD = {"audio": {"input": {"turn_detection": None}}}


@pytest.fixture
async def sim():
    async with start_simulator() as simulator:
        yield simulator


def tutor_instructions(language: str, level: str) -> str:
    return f"You are a friendly tutor.\nTarget language: {language}\nCurrent CEFR level: {level}\n"


async def update(client: RealtimeTestClient, **session) -> dict:
    event = await client.request(
        {"type": "session.update", "session": {"type": "realtime", **session}}, "session.updated"
    )
    assert event["type"] == "session.updated", event
    return event["session"]


async def respond(client: RealtimeTestClient, **response) -> list[dict]:
    await client.send({"type": "response.create", **({"response": response} if response else {})})
    return await client.collect_until("response.done")


async def say(client: RealtimeTestClient, text: str) -> None:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    await client.request({"type": "conversation.item.create", "item": item}, "conversation.item.done")


def audio_of(events: list[dict]) -> bytes:
    return b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")


def done_response(events: list[dict]) -> dict:
    return next(e for e in events if e["type"] == "response.done")["response"]


def error_of(event: dict) -> dict:
    assert event["type"] == "error", event
    return event["error"]


# --- handshake ----------------------------------------------------------------------------


async def test_missing_bearer_token_is_refused_with_http_401(sim):
    with pytest.raises(InvalidStatus) as caught:
        async with websockets.connect(f"{sim.url}?model=gpt-realtime"):
            pass
    response = caught.value.response
    assert response.status_code == 401
    assert json.loads(response.body)["error"]["message"] == "Missing bearer or basic authentication in header"


async def test_wrong_api_key_upgrades_then_gets_invalid_api_key_and_close_3000():
    """The real API's shape (twilio-samples/speech-assistant-openai-realtime-api-python#4): no HTTP 401."""
    async with start_simulator(api_key="sk-right") as simulator:
        async with RealtimeTestClient.connect(simulator.url, api_key="sk-wrong-key", expect_session=False) as client:
            error = error_of(await client.recv())
            assert error["type"] == "invalid_request_error" and error["code"] == "invalid_api_key"
            assert error["message"].startswith("Incorrect API key provided: sk-***-key.")
            assert "sk-wrong-key" not in error["message"] and error["event_id"] is None
            with pytest.raises(ConnectionClosed) as closed:
                await client.recv()
            assert closed.value.rcvd.code == 3000
            assert closed.value.rcvd.reason == "invalid_request_error.invalid_api_key"
            assert [e["type"] for e in client.received] == ["error"]  # no session.created
        async with RealtimeTestClient.connect(simulator.url, api_key="sk-right") as client:
            assert client.received[0]["type"] == "session.created"


@pytest.mark.parametrize(
    "status, code, kind",
    [
        (401, "invalid_api_key", "invalid_request_error"),
        (403, "unsupported_country_region_territory", "request_forbidden"),
        (429, "rate_limit_exceeded", "requests"),
        (500, None, "server_error"),
        (503, None, "server_error"),
    ],
)
async def test_refuse_upgrade_answers_the_upgrade_with_that_http_status(sim, status, code, kind):
    with pytest.raises(InvalidStatus) as caught:
        async with RealtimeTestClient.connect(sim.url, query=f"model=m&refuse_upgrade={status}"):
            pass
    response = caught.value.response
    assert response.status_code == status
    error = json.loads(response.body)["error"]
    assert (error["code"], error["type"]) == (code, kind) and error["message"]
    assert not sim.connections


@pytest.mark.parametrize("query", ["refuse_upgrade=200", "refuse_upgrade=499", "fail_responses=tired",
                                   "fail_after_responses=-1", "fail_for_responses=0", "rate_limit_reset_seconds=-1"])
async def test_bad_failure_knobs_are_refused_with_400(sim, query):
    with pytest.raises(InvalidStatus) as caught:
        async with RealtimeTestClient.connect(sim.url, query=f"model=m&{query}"):
            pass
    assert caught.value.response.status_code == 400


async def test_wrong_path_is_404(sim):
    with pytest.raises(InvalidStatus) as caught:
        wrong = sim.url.replace("/v1/realtime", "/v1/other")
        async with websockets.connect(wrong, additional_headers={"Authorization": "Bearer x"}):
            pass
    assert caught.value.response.status_code == 404


@pytest.mark.parametrize("query", ["model=m&true_level=Z9", "model=m&pace=fast", "model=m&require_auth=0"])
async def test_bad_or_forbidden_knob_in_query_is_refused_with_400(sim, query):
    with pytest.raises(InvalidStatus) as caught:
        async with RealtimeTestClient.connect(sim.url, query=query):
            pass
    assert caught.value.response.status_code == 400


async def test_query_string_overrides_knobs_per_connection(sim):
    async with RealtimeTestClient.connect(sim.url, query="model=gpt-realtime&pace=0.5&true_level=C1&seed=7"):
        (connection,) = sim.connections
        assert (connection.knobs.pace, connection.knobs.true_level, connection.knobs.seed) == (0.5, "C1", 7)
        assert connection.model == "gpt-realtime"


async def test_missing_model_sends_error_then_closes_4000(sim):
    async with RealtimeTestClient.connect(sim.url, query="", expect_session=False) as client:
        assert error_of(await client.recv())["code"] == "missing_model"
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
        assert closed.value.rcvd.code == 4000


# --- failed responses and rate limits ---------------------------------------------------------


def rate_limit(event: dict, name: str) -> dict:
    assert event["type"] == "rate_limits.updated", event
    return next(limit for limit in event["rate_limits"] if limit["name"] == name)


async def test_rate_limits_updated_follows_each_response_done(sim):
    """As captured from the GA API (rate_limits.updated after response.done, see simulator/responses.py)."""
    async with RealtimeTestClient.connect(sim.url) as client:
        await respond(client)
        first = await client.recv()
        await respond(client)
        second = await client.recv()
    assert {limit["name"] for limit in first["rate_limits"]} == {"requests", "tokens"}
    assert rate_limit(second, "tokens")["remaining"] < rate_limit(first, "tokens")["remaining"]
    assert rate_limit(second, "requests")["remaining"] == rate_limit(first, "requests")["remaining"] - 1


@pytest.mark.parametrize(
    "kind, error",
    [
        ("rate_limit", {"type": "invalid_request_error", "code": "inference_rate_limit_exceeded",
                        "message": "We're currently processing too many requests \u2014 please try again later."}),
        ("quota", {"type": "insufficient_quota", "code": "insufficient_quota",
                   "message": "You exceeded your current quota, please check your plan and billing details. For more "
                   "information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors."}),
        ("model", {"type": "invalid_request_error", "code": "model_not_found",
                   "message": "The model `gpt-realtime` does not exist or you do not have access to it."}),
    ],
)
async def test_failed_responses_end_failed_with_the_real_error_and_no_output(sim, kind, error):
    async with RealtimeTestClient.connect(sim.url, query=f"model=gpt-realtime&fail_responses={kind}") as client:
        events = await respond(client)
        limits = await client.recv()
        # The session lives on: it still answers.
        assert (await update(client, instructions="x"))["instructions"] == "x"
    assert [e["type"] for e in events] == ["response.created", "response.done"]
    response = done_response(events)
    assert response["status"] == "failed" and response["output"] == []
    assert response["status_details"] == {"type": "failed", "error": error}
    assert response["usage"]["total_tokens"] == 0
    assert (rate_limit(limits, "tokens")["remaining"] == 0) is (kind == "rate_limit")


async def test_failures_start_after_n_responses_and_last_for_m(sim):
    query = "model=m&fail_responses=rate_limit&fail_after_responses=1&fail_for_responses=2&rate_limit_reset_seconds=2.5"
    async with RealtimeTestClient.connect(sim.url, query=query) as client:
        statuses, resets = [], []
        for _ in range(4):
            statuses.append(done_response(await respond(client))["status"])
            resets.append(rate_limit(await client.recv(), "tokens"))
    assert statuses == ["completed", "failed", "failed", "completed"]
    assert [(r["remaining"], r["reset_seconds"]) for r in resets[1:3]] == [(0, 2.5), (0, 2.5)]
    assert resets[3]["remaining"] > 0


# --- session ---------------------------------------------------------------------------------


async def test_session_created_comes_first_with_the_ga_session_shape(sim):
    async with RealtimeTestClient.connect(sim.url, query="model=gpt-realtime-mini") as client:
        session = client.received[0]["session"]
    assert session["type"] == "realtime" and session["object"] == "realtime.session"
    assert session["id"].startswith("sess_") and session["model"] == "gpt-realtime-mini"
    assert session["output_modalities"] == ["audio"]
    assert session["audio"]["output"]["voice"] == "alloy"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert session["expires_at"] >= time.time() + 3500


async def test_session_update_returns_the_full_effective_session(sim):
    async with RealtimeTestClient.connect(sim.url) as client:
        session = await update(
            client,
            instructions=tutor_instructions("es", "B1"),
            output_modalities=["audio"],
            tools=[PROBE_TOOL],
            audio={
                "input": {
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
                    "transcription": {"model": "gpt-4o-transcribe", "language": "es"},
                },
                "output": {"voice": "marin", "speed": 0.8},
            },
        )
        assert session["instructions"] == tutor_instructions("es", "B1")
        assert session["tools"] == [PROBE_TOOL]
        pcm = {"type": "audio/pcm", "rate": 24000}
        assert session["audio"]["output"] == {"format": pcm, "voice": "marin", "speed": 0.8}
        detection = session["audio"]["input"]["turn_detection"]
        assert detection["silence_duration_ms"] == 300  # given
        assert (detection["threshold"], detection["create_response"]) == (0.5, True)  # defaults filled in
        transcription = session["audio"]["input"]["transcription"]
        assert transcription == {"model": "gpt-4o-transcribe", "language": "es", "prompt": None}
        # Only the fields present change.
        again = await update(client, instructions="Only this changes.")
        assert again["instructions"] == "Only this changes."
        assert again["tools"] == [PROBE_TOOL] and again["audio"]["output"]["voice"] == "marin"
        assert again["id"] == session["id"]


# --- responses ---------------------------------------------------------------------------------


async def test_audio_response_follows_the_documented_event_order_with_real_ids(sim):
    async with RealtimeTestClient.connect(sim.url) as client:
        await update(client, instructions=tutor_instructions("it", "A2"), audio={"output": {"voice": "sage"}})
        events = await respond(client)
    assert [e["type"] for e in events if e["type"] not in DELTAS] == AUDIO_RESPONSE_ORDER
    first_delta = next(i for i, e in enumerate(events) if e["type"] in DELTAS)
    last_delta = max(i for i, e in enumerate(events) if e["type"] in DELTAS)
    assert events[first_delta - 1]["type"] == "response.content_part.added"
    assert events[last_delta + 1]["type"] == "response.output_audio.done"
    response = done_response(events)
    item_id = events[1]["item"]["id"]
    assert response["id"].startswith("resp_") and item_id.startswith("item_")
    assert {e["response_id"] for e in events if "response_id" in e} == {response["id"]}
    assert {e["item_id"] for e in events if "item_id" in e} == {item_id}
    assert len({e["event_id"] for e in events}) == len(events)
    assert response["status"] == "completed" and response["status_details"] is None
    assert response["conversation_id"].startswith("conv_") and response["usage"]["total_tokens"] > 0
    transcript = next(e for e in events if e["type"] == "response.output_audio_transcript.done")["transcript"]
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta")
    assert deltas == transcript == response["output"][0]["content"][0]["transcript"]
    assert any(question in transcript for question in QUESTIONS["it"]["A2"])
    audio_deltas = [base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"]
    assert all(len(chunk) == 4800 for chunk in audio_deltas[:-1])  # 100 ms of PCM16 24 kHz each
    assert len(b"".join(audio_deltas)) == speech_ms(transcript) * 48
    assert estimate_voice(audio_deltas[0] + audio_deltas[1] + audio_deltas[2]) == "sage"
    assert events[-2]["item"]["status"] == "completed"


async def test_audio_deltas_are_paced_in_real_time_at_pace_1(sim):
    async with RealtimeTestClient.connect(sim.url, query="model=m&pace=1&audio_ms_per_response=600") as client:
        started = time.monotonic()
        events = await respond(client)
    assert len(audio_of(events)) == 600 * 48
    assert time.monotonic() - started >= 0.45  # six 100 ms chunks, the last sent without a wait


async def test_by_default_audio_is_generated_faster_than_real_time_and_the_transcript_leads_it():
    """Like the API ("The server will produce audio faster than realtime", ConversationItemTruncateEvent)."""
    default = SimulatorKnobs().pace
    assert default >= 2
    async with start_simulator(pace=default) as simulator:  # the default, not the tests' pace 0
        async with RealtimeTestClient.connect(simulator.url, query="model=m&audio_ms_per_response=2000") as client:
            started = time.monotonic()
            events = await respond(client)
            elapsed = time.monotonic() - started
    assert len(audio_of(events)) == 2000 * 48
    assert 2.0 / default - 0.1 <= elapsed < 1.6  # 2 s of audio in about half a second, not at once
    audio = [i for i, e in enumerate(events) if e["type"] == "response.output_audio.delta"]
    text = [i for i, e in enumerate(events) if e["type"] == "response.output_audio_transcript.delta"]
    assert text[0] < audio[0]  # the first words come before the first audio
    assert text[-1] < audio[len(audio) // 2 + 1]  # the whole transcript is out by the middle of the audio


async def test_response_cancel_ends_the_active_response_as_client_cancelled(sim):
    async with RealtimeTestClient.connect(sim.url, query="model=m&pace=1&audio_ms_per_response=3000") as client:
        await client.send({"type": "response.create"})
        await client.wait_for("response.output_audio.delta")
        await client.send({"type": "response.cancel"})
        events = await client.collect_until("response.done")
        response = done_response(events)
        assert response["status"] == "cancelled"
        assert response["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
        assert response["output"][0]["status"] == "incomplete"
        assert len(audio_of(client.received)) < 3000 * 48
        # Nothing of the cancelled response arrives afterwards.
        await client.send({"type": "session.update", "session": {"type": "realtime"}})
        tail = await client.collect_until("session.updated")
        assert not [e for e in tail if e.get("response_id") == response["id"]]


async def test_response_cancel_with_the_active_response_id(sim):
    async with RealtimeTestClient.connect(sim.url, query="model=m&pace=1&audio_ms_per_response=3000") as client:
        await client.send({"type": "response.create"})
        created = await client.wait_for("response.created")
        await client.send({"type": "response.cancel", "response_id": created["response"]["id"]})
        response = (await client.wait_for("response.done"))["response"]
    assert response["id"] == created["response"]["id"] and response["status"] == "cancelled"


async def test_response_cancel_without_an_active_response_is_an_error_naming_our_event(sim):
    async with RealtimeTestClient.connect(sim.url) as client:
        sent = await client.send({"type": "response.cancel"}, event_id="cancel-1")
        error = error_of(await client.recv())
        assert error == {
            "type": "invalid_request_error",
            "code": "response_cancel_not_active",
            "message": "Cancellation failed: no active response found",
            "param": None,
            "event_id": sent,
        }
        finished = done_response(await respond(client))
        sent = await client.send({"type": "response.cancel", "response_id": finished["id"]}, event_id="cancel-late")
        error = error_of(await client.wait_for("error"))
        assert (error["code"], error["event_id"]) == ("response_cancel_not_active", sent)
        # The session is unaffected.
        assert done_response(await respond(client))["status"] == "completed"


async def test_response_create_while_active_is_an_error_with_the_documented_message(sim):
    async with RealtimeTestClient.connect(sim.url, query="model=m&pace=1&audio_ms_per_response=800") as client:
        await client.send({"type": "response.create"})
        active = (await client.wait_for("response.created"))["response"]["id"]
        sent = await client.send({"type": "response.create"}, event_id="second")
        error = error_of(await client.wait_for("error"))
        assert error["code"] == "conversation_already_has_active_response"
        assert error["message"] == (
            f"Conversation already has an active response in progress: {active}. "
            "Wait until the response is finished before creating a new one."
        )
        assert error["event_id"] == sent
        assert (await client.wait_for("response.done"))["response"]["status"] == "completed"


async def test_out_of_band_response_runs_in_parallel_outside_the_conversation(sim):
    async with RealtimeTestClient.connect(sim.url, query="model=m&pace=1&audio_ms_per_response=1000") as client:
        await client.send({"type": "response.create"})
        default = (await client.wait_for("response.created"))["response"]["id"]
        await client.send(
            {
                "type": "response.create",
                "response": {
                    "conversation": "none",
                    "metadata": {"purpose": "summary"},
                    "instructions": "Read aloud verbatim: Out of band.",
                },
            }
        )
        events = await client.collect_until(
            lambda e: e["type"] == "response.done" and e["response"]["id"] != default, timeout=5
        )
        oob = done_response([e for e in events if e["type"] == "response.done" and e["response"]["id"] != default])
        assert oob["status"] == "completed" and oob["conversation_id"] is None
        assert oob["metadata"] == {"purpose": "summary"}
        assert oob["output"][0]["content"][0]["transcript"] == "Out of band."
        added = [e["item"]["id"] for e in client.received if e["type"] == "conversation.item.added"]
        assert oob["output"][0]["id"] not in added
        if not any(e["type"] == "response.done" and e["response"]["id"] == default for e in client.received):
            await client.wait_for(lambda e: e["type"] == "response.done" and e["response"]["id"] == default)


async def test_text_output_modality_streams_text_events(sim):
    async with RealtimeTestClient.connect(sim.url) as client:
        await update(client, output_modalities=["text"])
        events = await respond(client)
    types = [e["type"] for e in events]
    assert "response.output_text.delta" in types and "response.output_text.done" in types
    assert not any(t.startswith("response.output_audio") for t in types)
    text = next(e for e in events if e["type"] == "response.output_text.done")["text"]
    assert done_response(events)["output"][0]["content"][0] == {"type": "output_text", "text": text}


# --- the voice rule ----------------------------------------------------------------------------


async def test_voice_update_before_any_audio_succeeds_and_is_heard(sim):
    async with RealtimeTestClient.connect(sim.url) as client:
        session = await update(client, audio={"output": {"voice": "ash"}})
        assert session["audio"]["output"]["voice"] == "ash"
        events = await respond(client)
    assert estimate_voice(audio_of(events)[: 300 * 48]) == "ash"


async def test_voice_update_after_audio_is_rejected_as_a_whole(sim):
    async with RealtimeTestClient.connect(sim.url) as client:
        await update(client, instructions="Before.")
        await respond(client)
        coral = {"output": {"voice": "coral"}}
        sent = await client.send(
            {"type": "session.update", "session": {"type": "realtime", "instructions": "After.", "audio": coral}}
        )
        error = error_of(await client.wait_for("error"))
        assert error == {
            "type": "invalid_request_error",
            "code": "cannot_update_voice",
            "message": "Cannot update a conversation's voice if assistant audio is present.",
            "param": None,
            "event_id": sent,
        }
        # Clearing buffers does not lift the rule; the rejected update changed nothing.
        await client.request({"type": "input_audio_buffer.clear"}, "input_audio_buffer.cleared")
        again = await client.request(
            {"type": "session.update", "session": {"type": "realtime", "audio": coral}}, "session.updated"
        )
        assert error_of(again)["code"] == "cannot_update_voice"
        session = await update(client, audio={"output": {"voice": "alloy"}})  # same voice: fine
        assert session["instructions"] == "Before." and session["audio"]["output"]["voice"] == "alloy"


async def test_per_response_voice_follows_the_same_rule(sim):
    async with RealtimeTestClient.connect(sim.url) as client:
        events = await respond(client, audio={"output": {"voice": "shimmer"}})
        assert events[0]["response"]["audio"]["output"]["voice"] == "shimmer"
        assert estimate_voice(audio_of(events)[: 300 * 48]) == "shimmer"
        sent = await client.send({"type": "response.create", "response": {"audio": {"output": {"voice": "echo"}}}})
        error = error_of(await client.wait_for("error"))
        assert (error["code"], error["event_id"]) == ("cannot_update_voice", sent)


# --- input audio buffer and VAD ------------------------------------------------------------------


async def test_input_audio_buffer_commit_and_clear(sim):
    async with RealtimeTestClient.connect(sim.url) as client:
        await update(client, **NO_VAD)
        sent = await client.send({"type": "input_audio_buffer.commit"})
        error = error_of(await client.wait_for("error"))
        assert error["code"] == "input_audio_buffer_commit_empty" and error["event_id"] == sent
        assert error["message"] == (
            "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
            "but buffer only has 0.00ms of audio."
        )
        await client.append_audio(synthesize("hola", "echo", 50))
        error = error_of(await client.request({"type": "input_audio_buffer.commit"}, "input_audio_buffer.committed"))
        assert "only has 50.00ms of audio" in error["message"]
        await client.append_audio(synthesize("hola amigo", "echo", 500))
        await client.send({"type": "input_audio_buffer.commit"})
        events = await client.collect_until("conversation.item.done")
        assert [e["type"] for e in events] == [
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done",
        ]
        committed = events[0]
        assert committed["item_id"].startswith("item_") and committed["previous_item_id"] is None
        assert events[1]["item"]["id"] == committed["item_id"]
        assert events[1]["item"]["role"] == "user" and events[1]["item"]["content"][0]["type"] == "input_audio"
        await client.append_audio(silence(300))
        assert (await client.request({"type": "input_audio_buffer.clear"}, "input_audio_buffer.cleared"))["type"] == (
            "input_audio_buffer.cleared"
        )
        error = error_of(await client.request({"type": "input_audio_buffer.commit"}, "input_audio_buffer.committed"))
        assert "only has 0.00ms" in error["message"]


async def test_server_vad_detects_speech_commits_and_responds_without_claiming_words(sim):
    async with RealtimeTestClient.connect(sim.url) as client:
        await update(
            client,
            instructions=tutor_instructions("fr", "A2"),
            audio={
                "input": {
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
                    "transcription": {"model": "gpt-4o-mini-transcribe", "language": "fr"},
                }
            },
        )
        await client.append_audio(silence(400) + synthesize("Je suis allé au cinéma", "echo", 1200) + silence(500))
        events = await client.collect_until("response.created")
    by_type = {e["type"]: e for e in events}
    started, stopped = by_type["input_audio_buffer.speech_started"], by_type["input_audio_buffer.speech_stopped"]
    committed = by_type["input_audio_buffer.committed"]
    assert started["item_id"] == stopped["item_id"] == committed["item_id"]
    assert 0 <= started["audio_start_ms"] <= 400 and 1600 <= stopped["audio_end_ms"] <= 2100
    order = [e["type"] for e in events if not e["type"].endswith("transcription.delta")]
    assert order == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.failed",
        "response.created",
    ]
    # No recognizer: the simulator never claims words the learner said. It reports the transcription
    # failed, in the real API's shape (openai/openai-realtime-console#46).
    failed = by_type["conversation.item.input_audio_transcription.failed"]
    assert failed["item_id"] == committed["item_id"] and failed["content_index"] == 0
    assert failed["error"] == {
        "type": "server_error", "code": None, "param": None,
        "message": f"Input transcription failed for item '{committed['item_id']}'.",
    }
    assert not any(e["type"].startswith("conversation.item.input_audio_transcription.delta") for e in events)


async def test_semantic_vad_is_accepted_and_detects_speech(sim):
    async with RealtimeTestClient.connect(sim.url) as client:
        semantic = {"type": "semantic_vad", "create_response": False}
        session = await update(client, audio={"input": {"turn_detection": semantic}})
        assert session["audio"]["input"]["turn_detection"]["eagerness"] == "auto"
        await client.append_audio(synthesize("hello there", "echo", 600) + silence(700))
        events = await client.collect_until("conversation.item.done")
    assert [e["type"] for e in events][:3] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
    ]


async def test_vad_barge_in_cancels_the_active_response_with_turn_detected(sim):
    async with RealtimeTestClient.connect(sim.url, query="model=m&pace=1&audio_ms_per_response=4000") as client:
        await client.send({"type": "response.create"})
        await client.wait_for("response.output_audio.delta")
        await client.append_audio(synthesize("wait a moment", "echo", 300))
        events = await client.collect_until("response.done")
        assert [e["type"] for e in events if e["type"] not in DELTAS][0] == "input_audio_buffer.speech_started"
        response = done_response(events)
        assert response["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
        # The learner's turn then ends and, with create_response, a new response starts.
        await client.append_audio(silence(700))
        events = await client.collect_until("response.created")
        assert "input_audio_buffer.committed" in [e["type"] for e in events]
        assert events[-1]["response"]["id"] != response["id"]


async def test_interrupt_response_false_lets_the_response_finish(sim):
    async with RealtimeTestClient.connect(sim.url, query="model=m&pace=1&audio_ms_per_response=700") as client:
        detection = {"type": "server_vad", "interrupt_response": False, "create_response": False}
        await update(client, audio={"input": {"turn_detection": detection}})
        await client.send({"type": "response.create"})
        await client.wait_for("response.output_audio.delta")
        await client.append_audio(synthesize("excuse me", "echo", 300))
        events = await client.collect_until("response.done")
    assert "input_audio_buffer.speech_started" in [e["type"] for e in events]
    assert done_response(events)["status"] == "completed"


async def test_vad_threshold_sets_how_loud_speech_must_be(sim):
    async with RealtimeTestClient.connect(sim.url) as client:
        await update(client, audio={"input": {"turn_detection": {"type": "server_vad", "threshold": 0.95}}})
        await client.append_audio(synthesize("a normal voice", "echo", 600) + silence(700))
        await client.send({"type": "input_audio_buffer.clear"})
        assert [e["type"] for e in await client.collect_until("input_audio_buffer.cleared")] == [
            "input_audio_buffer.cleared"
        ]
        await update(client, audio={"input": {"turn_detection": {"type": "server_vad", "threshold": 0.2}}})
        await client.append_audio(synthesize("a normal voice", "echo", 600))
        assert (await client.recv())["type"] == "input_audio_buffer.speech_started"


async def test_turn_detection_null_disables_vad(sim):
    async with RealtimeTestClient.connect(sim.url) as client:
        session = await update(client, **NO_VAD)
        assert session["audio"]["input"]["turn_detection"] is None
        await client.append_audio(synthesize("nobody is listening", "echo", 800) + silence(800))
        await client.send({"type": "input_audio_buffer.clear"})
        events = await client.collect_until("input_audio_buffer.cleared")
    assert [e["type"] for e in events] == ["input_audio_buffer.cleared"]


# --- conversation items ------------------------------------------------------------------------


async def test_item_create_delete_and_retrieve(sim):
    async with RealtimeTestClient.connect(sim.url) as client:
        first = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "one"}]}
        await client.send({"type": "conversation.item.create", "item": first})
        events = await client.collect_until("conversation.item.done")
        assert [e["type"] for e in events] == ["conversation.item.added", "conversation.item.done"]
        first_id = events[0]["item"]["id"]
        assert events[0]["previous_item_id"] is None and events[0]["item"]["status"] == "completed"
        second = {**first, "id": "item_mine_2", "content": [{"type": "input_text", "text": "two"}]}
        added = await client.request({"type": "conversation.item.create", "item": second}, "conversation.item.added")
        assert added["item"]["id"] == "item_mine_2" and added["previous_item_id"] == first_id
        root = await client.request(
            {"type": "conversation.item.create", "previous_item_id": "root", "item": {**first, "id": "item_root"}},
            "conversation.item.added",
        )
        assert root["previous_item_id"] is None
        delete = {"type": "conversation.item.delete", "item_id": first_id}
        deleted = await client.request(delete, "conversation.item.deleted")
        assert (deleted["type"], deleted["item_id"]) == ("conversation.item.deleted", first_id)
        sent = await client.send(delete)
        error = error_of(await client.wait_for("error"))
        assert error["code"] == "item_delete_invalid_item_id" and error["event_id"] == sent
        assert error["message"] == f"Error deleting item: the item with id '{first_id}' does not exist."
        retrieve = {"type": "conversation.item.retrieve", "item_id": "item_mine_2"}
        retrieved = await client.request(retrieve, "conversation.item.retrieved")
        assert retrieved["item"]["content"][0]["text"] == "two"
        error = error_of(await client.request({**retrieve, "item_id": "nope"}, "conversation.item.retrieved"))
        assert error["code"] == "item_retrieve_invalid_item_id"
        create = {"type": "conversation.item.create", "item": second}
        assert error_of(await client.request(create, "conversation.item.added"))["param"] == "item.id"
        create = {"type": "conversation.item.create", "previous_item_id": "gone", "item": first}
        assert error_of(await client.request(create, "conversation.item.added"))["param"] == "previous_item_id"


async def test_truncate_rules(sim):
    async with RealtimeTestClient.connect(sim.url, query="model=m&audio_ms_per_response=1000") as client:
        await say(client, "hello")
        user_item = client.received[-1]["item"]["id"]
        assistant_item = done_response(await respond(client))["output"][0]["id"]

        async def truncate(item_id: str, audio_end_ms: int, content_index: int = 0) -> dict:
            event = {"type": "conversation.item.truncate", "item_id": item_id}
            event.update(content_index=content_index, audio_end_ms=audio_end_ms)
            return await client.request(event, "conversation.item.truncated")

        error = error_of(await truncate("dummy", 100))
        assert error["code"] == "item_truncate_invalid_item_id"
        assert error["message"] == "Item with item_id not found: dummy"
        error = error_of(await truncate(user_item, 100))
        assert error["code"] == "unsupported_content_type"
        assert error["message"] == "Only model output audio messages can be truncated"
        error = error_of(await truncate(assistant_item, 100, content_index=1))
        assert (error["code"], error["param"]) == ("invalid_value", "content_index")
        error = error_of(await truncate(assistant_item, 5000))
        assert error["code"] == "invalid_value"
        assert error["message"] == "Audio content of 1000ms is already shorter than 5000ms"
        truncated = await truncate(assistant_item, 400)
        assert {k: truncated[k] for k in ("type", "item_id", "content_index", "audio_end_ms")} == {
            "type": "conversation.item.truncated",
            "item_id": assistant_item,
            "content_index": 0,
            "audio_end_ms": 400,
        }
        retrieve = {"type": "conversation.item.retrieve", "item_id": assistant_item}
        item = (await client.request(retrieve, "conversation.item.retrieved"))["item"]
        assert item["content"][0]["transcript"] is None
        error = error_of(await truncate(assistant_item, 600))
        assert error["message"] == "Audio content of 400ms is already shorter than 600ms"


# --- the scripted tutor and function calling ------------------------------------------------------


async def test_record_probe_function_call_flow(sim, caplog):
    caplog.set_level(logging.DEBUG, logger="tutor.realtime.simulator")  # structured log records must build
    async with RealtimeTestClient.connect(sim.url, query="model=m&true_level=B1") as client:
        await update(client, instructions=tutor_instructions("de", "A2"), tools=[PROBE_TOOL])
        greeting = done_response(await respond(client))
        assert greeting["output"][0]["type"] == "message"
        await say(client, "Am Samstag war ich im Park.")
        events = await respond(client)
        assert [e["type"] for e in events if "arguments.delta" not in e["type"]] == [
            "response.created",
            "response.output_item.added",
            "conversation.item.added",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
        ]
        call = next(e for e in events if e["type"] == "response.function_call_arguments.done")
        deltas = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
        assert deltas == call["arguments"] and call["name"] == "record_probe" and call["call_id"].startswith("call_")
        arguments = json.loads(call["arguments"])
        assert (arguments["level"], arguments["outcome"]) == ("A2", "sustained") and arguments["evidence"]
        (item,) = done_response(events)["output"]
        assert item["type"] == "function_call" and item["call_id"] == call["call_id"]
        # The tutor waits: the client answers the call, raises the level and asks for the next turn.
        output = {"type": "function_call_output", "call_id": call["call_id"], "output": '{"ok": true}'}
        await client.request({"type": "conversation.item.create", "item": output}, "conversation.item.done")
        await update(client, instructions=tutor_instructions("de", "C1"))
        spoken = done_response(await respond(client))["output"][0]["content"][0]["transcript"]
        assert any(question in spoken for question in QUESTIONS["de"]["C1"])
        await say(client, "Ich glaube, das ist schwierig.")
        arguments = json.loads(done_response(await respond(client))["output"][0]["arguments"])
        assert (arguments["level"], arguments["outcome"]) == ("C1", "breakdown")
    called = [r for r in caplog.records if r.getMessage() == "function called"]
    assert len(called) == 2 and called[0].tool == "record_probe"


async def test_a_gpt_realtime_2_reply_holds_a_preamble_the_call_and_the_answer(sim):
    async with RealtimeTestClient.connect(sim.url, query="model=gpt-realtime-2.1&true_level=B1") as client:
        await update(client, instructions=tutor_instructions("es", "B1"), tools=[PROBE_TOOL])
        await respond(client)  # the greeting
        await say(client, "Si ganara un viaje, iría a Japón.")
        events = await respond(client)
    output = done_response(events)["output"]
    assert [item["type"] for item in output] == ["message", "function_call", "message"]
    assert all(item["status"] == "completed" for item in output)
    # One item after the other: each is done before the next is added.
    items = [(e["type"], e["output_index"]) for e in events if e["type"].startswith("response.output_item.")]
    assert items == [(f"response.output_item.{step}", i) for i in range(3) for step in ("added", "done")]
    said = {e["item_id"]: e["transcript"] for e in events if e["type"] == "response.output_audio_transcript.done"}
    preamble, answer = output[0], output[2]
    assert said[preamble["id"]] == preamble["content"][0]["transcript"] and len(said[preamble["id"]].split()) <= 4
    assert any(q in said[answer["id"]] for q in QUESTIONS["es"]["B1"])
    assert json.loads(output[1]["arguments"])["outcome"] == "sustained"


async def test_reasoning_is_reported_and_updated_for_the_gpt_realtime_2_family(sim):
    async with RealtimeTestClient.connect(sim.url, query="model=gpt-realtime-2.1", expect_session=False) as client:
        created = await client.recv()
        assert created["session"]["reasoning"] == {"effort": "low"}
        session = await update(client, reasoning={"effort": "high"})
        assert session["reasoning"] == {"effort": "high"} and session["model"] == "gpt-realtime-2.1"
    async with RealtimeTestClient.connect(sim.url, query="model=gpt-realtime-1.5", expect_session=False) as client:
        assert "reasoning" not in (await client.recv())["session"]


async def test_audio_learner_turn_via_vad_is_probed(sim):
    async with RealtimeTestClient.connect(sim.url, query="model=m&true_level=A2") as client:
        await update(
            client,
            instructions=tutor_instructions("es", "B2"),
            tools=[PROBE_TOOL],
            audio={"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 300}}},
        )
        await client.append_audio(synthesize("Creo que sí", "echo", 900) + silence(500))
        events = await client.collect_until("response.done")
    arguments = json.loads(next(e for e in events if e["type"] == "response.function_call_arguments.done")["arguments"])
    assert (arguments["level"], arguments["outcome"]) == ("B2", "breakdown")


async def test_heuristic_judges_a_real_learner_by_answer_length(sim):
    # A model whose reply to an answer is the call alone (the premise of output[0] below).
    async with RealtimeTestClient.connect(sim.url, query="model=gpt-realtime-1.5") as client:
        await update(client, instructions=tutor_instructions("en", "B1"), tools=[PROBE_TOOL])
        await say(client, "Yes.")
        short = json.loads(done_response(await respond(client))["output"][0]["arguments"])
        await say(client, "If I won a trip I would travel to Japan because I love its food and its old temples.")
        long = json.loads(done_response(await respond(client))["output"][0]["arguments"])
    assert (short["outcome"], long["outcome"]) == ("breakdown", "sustained")


@pytest.mark.parametrize("true_level", ["A2", "B1", "C2"])
async def test_simulated_learner_is_placed_at_its_true_level(sim, true_level):
    """Floor/ceiling placement (DESIGN section 5) over the wire ends at `true_level`."""
    async with RealtimeTestClient.connect(sim.url, query=f"model=m&true_level={true_level}") as client:
        level, floor = "A1", None
        tally = {"sustained": 0, "breakdown": 0}
        await update(client, instructions=tutor_instructions("es", level), tools=[PROBE_TOOL])
        await respond(client)
        for _ in range(30):
            await say(client, "Una respuesta del alumno.")
            call = done_response(await respond(client))["output"][0]
            outcome = json.loads(call["arguments"])["outcome"]
            output = {"type": "function_call_output", "call_id": call["call_id"], "output": "{}"}
            await client.request({"type": "conversation.item.create", "item": output}, "conversation.item.done")
            tally[outcome] += 1
            if tally["breakdown"] == 2:
                break
            if tally["sustained"] == 2:
                floor, level, tally = level, next_level(level), {"sustained": 0, "breakdown": 0}
                if level is None:
                    break
                await update(client, instructions=tutor_instructions("es", level))
            await respond(client)
    assert floor == true_level


async def test_narrator_speaks_verbatim_and_never_calls_tools(sim):
    async with RealtimeTestClient.connect(sim.url) as client:
        await update(client, instructions="Role: narrator\nRead the summary.", tools=[PROBE_TOOL])
        await say(client, "This learner text must not trigger a probe.")
        text = "Your level is B1. Well done, and keep practising!"
        events = await respond(client, instructions=f"Summarise the assessment.\nRead aloud verbatim: {text}")
    assert not any(e["type"].startswith("response.function_call") for e in events)
    assert done_response(events)["output"][0]["content"][0]["transcript"] == text
    assert len(audio_of(events)) == speech_ms(text) * 48


async def test_same_seed_gives_the_same_script_but_unique_ids(sim):
    transcripts, ids = [], []
    for _ in range(2):
        async with RealtimeTestClient.connect(sim.url, query="model=m&seed=42") as client:
            await update(client, instructions=tutor_instructions("fr", "B2"))
            response = done_response(await respond(client))
            transcripts.append(response["output"][0]["content"][0]["transcript"])
            ids.append(response["id"])
    assert transcripts[0] == transcripts[1] and ids[0] != ids[1]


# --- malformed input -----------------------------------------------------------------------------


async def test_malformed_events_get_errors_and_the_connection_stays_open(sim):
    async with RealtimeTestClient.connect(sim.url) as client:
        await client.send_raw("not json")
        error = error_of(await client.recv())
        assert (error["type"], error["code"], error["event_id"]) == ("invalid_request_error", "invalid_json", None)
        assert error["message"].startswith("Invalid event: failed to parse JSON value.")

        sent = await client.send({"type": "response.explode"})
        error = error_of(await client.recv())
        assert (error["code"], error["param"], error["event_id"]) == ("invalid_value", "type", sent)
        assert error["message"].startswith("Invalid value: 'response.explode'. Supported values are: 'session.update',")

        sent = await client.send({"type": "conversation.item.delete"})
        error = error_of(await client.recv())
        assert error == {
            "type": "invalid_request_error",
            "code": "missing_required_parameter",
            "message": "Missing required parameter: 'item_id'.",
            "param": "item_id",
            "event_id": sent,
        }
        await client.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user"}})
        assert error_of(await client.recv())["param"] == "item.content"

        await client.send({"type": "session.update", "session": {"type": "realtime", "bogus_field": 1}})
        error = error_of(await client.recv())
        assert (error["code"], error["message"]) == ("unknown_parameter", "Unknown parameter: 'session.bogus_field'.")

        await client.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["smell"]}})
        error = error_of(await client.recv())
        assert (error["code"], error["param"]) == ("invalid_value", "session.output_modalities[0]")

        await client.send({"type": "output_audio_buffer.clear"})  # WebRTC/SIP only
        assert error_of(await client.recv())["code"] == "invalid_value"

        assert (await update(client, instructions="still here"))["instructions"] == "still here"


async def test_binary_frames_are_refused_and_the_connection_stays_open(sim):
    async with RealtimeTestClient.connect(sim.url) as client:
        await client.send_raw(b"\x00\x01" * 32)
        error = error_of(await client.recv())
        assert (error["code"], error["message"]) == (
            "invalid_event",
            "Expected a text WebSocket message; binary frames are not supported.",
        )
        assert (await update(client, instructions="ok"))["instructions"] == "ok"


async def test_oversized_message_closes_the_connection_with_1009(sim):
    async with RealtimeTestClient.connect(sim.url, query="model=m&max_message_bytes=4096") as client:
        await client.append_audio(silence(100))  # 4.8 kB of PCM = 6.4 kB of base64 in one event
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
    assert closed.value.rcvd is None or closed.value.rcvd.code == 1009
    assert closed.value.sent is None or closed.value.sent.code == 1009


# --- network and lifetime knobs ----------------------------------------------------------------


async def test_session_expiry_closes_with_1001_naming_the_maximum_duration(sim):
    async with RealtimeTestClient.connect(sim.url, query="model=m&session_max_seconds=0.3") as client:
        error = error_of(await client.recv())
        assert error["code"] == "session_expired"
        assert error["message"] == "Your session hit the maximum duration of 0.3 seconds."
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
    assert closed.value.rcvd.code == 1001
    assert closed.value.rcvd.reason == "Your session hit the maximum duration of 0.3 seconds."


async def test_latency_delays_each_direction_without_reordering(sim):
    async with RealtimeTestClient.connect(sim.url, query="model=m&latency_ms=100") as client:
        started = time.monotonic()
        await update(client, instructions="x")
        assert time.monotonic() - started >= 0.19  # 100 ms in + 100 ms out
    async with RealtimeTestClient.connect(sim.url, query="model=m&latency_ms=20&jitter_ms=20&seed=3") as client:
        for n in range(15):
            await client.send({"type": "session.update", "session": {"type": "realtime", "instructions": str(n)}})
        seen = [(await client.wait_for("session.updated"))["session"]["instructions"] for _ in range(15)]
    assert seen == [str(n) for n in range(15)]


async def test_drop_after_events_aborts_the_connection(sim):
    async with RealtimeTestClient.connect(sim.url, query="model=m&drop_after_events=3") as client:
        await client.send({"type": "response.create"})
        await client.recv()
        await client.recv()
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
    assert closed.value.rcvd is None  # no close frame: a dropped connection
    assert len(client.received) == 3


async def test_drop_after_seconds_aborts_the_connection(sim):
    async with RealtimeTestClient.connect(sim.url, query="model=m&drop_after_seconds=0.2") as client:
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv(timeout=3)
    assert closed.value.rcvd is None and time.monotonic() - started >= 0.15


async def test_stop_closes_connections_and_leaves_no_tasks():
    async with start_simulator(pace=1.0, audio_ms_per_response=5000) as simulator:
        async with RealtimeTestClient.connect(simulator.url) as client:
            await client.send({"type": "response.create"})
            await client.wait_for("response.output_audio.delta")
            await simulator.stop()
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await client.recv()
            assert closed.value.rcvd.code == 1001
    assert simulator.connections == []
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("simulator-")]


async def test_background_simulator_serves_from_its_own_thread():
    background = BackgroundSimulator()
    url = await asyncio.to_thread(background.start)
    try:
        async with RealtimeTestClient.connect(url) as client:
            assert client.received[0]["type"] == "session.created"
    finally:
        await asyncio.to_thread(background.stop)
    assert not background._thread.is_alive()


async def test_speed_changes_only_between_responses():
    async with start_simulator(pace=1.0, audio_ms_per_response=1000) as sim:
        async with RealtimeTestClient.connect(sim.url) as client:
            await update(client, audio={"output": {"speed": 0.8}})  # no response: accepted
            await client.send({"type": "response.create"})
            await client.wait_for("response.output_audio.delta")
            refused = await client.request(
                {"type": "session.update", "session": {"type": "realtime", "audio": {"output": {"speed": 1.2}}}},
                "session.updated",
            )
            assert error_of(refused)["code"] == "cannot_update_speed"
            same = await client.request(  # the same speed (e.g. a level update that keeps it) is no change
                {"type": "session.update", "session": {"type": "realtime", "audio": {"output": {"speed": 0.8}}}},
                "session.updated",
            )
            assert same["type"] == "session.updated"
            await client.wait_for("response.done")
            assert (await update(client, audio={"output": {"speed": 1.2}}))["audio"]["output"]["speed"] == 1.2
