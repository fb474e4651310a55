"""PARLA_UPSTREAM_LOG and replay (issue 25): a session's upstream traffic as JSON lines, audio as byte
counts only, and replays of real captures published in public threads played back against the client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tutor import persona
from tutor.realtime import failures
from tutor.realtime.client import RealtimeClient
from tutor.realtime.record import Replay, ReplayServer, UpstreamRecorder
from tutor.testing.realtime_client import start_simulator

REPLAYS = Path(__file__).parent / "replays"


async def replayed(name: str) -> tuple[RealtimeClient, ReplayServer, list]:
    """Play `name` against a RealtimeClient that sends the record's own client events; returns the client
    (closed), the server and every event the client's handler got."""
    replay = Replay.load(REPLAYS / name)
    assert replay.header["source"].startswith("https://github.com/")  # each file names its capture
    seen = []

    async def handler(event):
        seen.append(event)

    async with ReplayServer(replay) as server:
        client = RealtimeClient(server.url, model="gpt-realtime", handler=handler, strict_read=False)
        await client.connect()
        for event in replay.sent:
            await client.send(event)
        last = replay.records[-1]
        if last["dir"] == "in":  # the last event read, or the close
            await client.wait_for(lambda e: e.type == last["event"]["type"], 5)
        else:
            await client.closed.wait()
        await client.close()
    assert server.unmatched == []
    return client, server, seen


async def test_a_failed_response_for_model_access_is_read_as_the_api_sent_it():
    client, _server, seen = await replayed("model-not-found.jsonl")
    done = [e for e in seen if e.type == "response.done"]
    assert len(done) == 1 and done[0].response.status == "failed"
    error = done[0].response.status_details.error
    assert failures.failed_response(error.code, error.type) is failures.MODEL
    assert not client.tracker.has_active_response


async def test_a_learner_turn_whose_transcription_failed_is_read_in_full():
    _client, _server, seen = await replayed("learner-turn-not-transcribed.jsonl")
    assert [e.type for e in seen if e.type != "session.created"] == [
        "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.failed",
    ]
    assert seen[3].item_id == "item_BOrBPrgrKh2WyKvZXU7f3"
    assert seen[4].error.message.startswith("Input transcription failed for item")


async def test_an_expired_session_errors_without_event_id_then_closes_1001():
    client, _server, _seen = await replayed("session-expired.jsonl")
    assert client.last_error.code == "session_expired" and client.last_error.event_id is None
    assert client.close_code == 1001 and "maximum duration" in client.close_reason


async def test_a_recorded_session_holds_no_audio_and_no_key_and_replays_to_the_same_state(tmp_path):
    key = "sk-parla-test-key-that-must-not-leak"
    async with start_simulator() as sim:
        client = RealtimeClient(sim.url, api_key=key, model="gpt-realtime-2.1", validate_sent=True)
        client.recorder = UpstreamRecorder(tmp_path, "tutor")
        await client.open(persona.narrator_session_config("sage"), 5)
        await client.send_audio(b"\x01\x02" * 2400)  # 100 ms of the learner's voice
        done = await client.request({"type": "response.create"}, "response.done", 10)
        item_id = done.response.output[0].id
        await client.close()
    (path,) = tmp_path.iterdir()
    text = path.read_text()
    assert key not in text and "AQIBAg" not in text  # neither the key nor the learner's audio (base64)
    records = [json.loads(line) for line in text.splitlines()]
    deltas = [r["event"] for r in records if r.get("event", {}).get("type") == "response.output_audio.delta"]
    assert deltas and all("delta" not in d and d["delta_bytes"] > 0 for d in deltas)
    appends = [r["event"] for r in records if r.get("event", {}).get("type") == "input_audio_buffer.append"]
    assert [a["audio_bytes"] for a in appends] == [4800]
    assert records[-1]["dir"] == "close"

    # Played back against a fresh client, the record gives the same state: the same audio, finished.
    replay = Replay.load(path)
    async with ReplayServer(replay) as server:
        again = RealtimeClient(server.url, model="gpt-realtime-2.1")
        await again.connect()
        for event in replay.sent:  # the client's side of the record (the server waits for each)
            if event["type"] == "input_audio_buffer.append":
                await again.send_audio(base64_len(event))
            else:
                await again.send(event)
        await again.wait_for(lambda e: e.type == "response.done", 5)
        await again.close()
    assert server.unmatched == []
    assert again.tracker.item(item_id).audio_bytes == client.tracker.item(item_id).audio_bytes > 0
    assert not again.tracker.has_active_response


def base64_len(event: dict) -> bytes:
    import base64

    return base64.b64decode(event["audio"])


@pytest.mark.parametrize("name", sorted(p.name for p in REPLAYS.glob("*.jsonl")))
def test_every_replay_file_names_its_source_and_marks_its_framing(name):
    replay = Replay.load(REPLAYS / name)
    assert "github.com" in replay.header["source"] and replay.header["note"]
    captured = [r for r in replay.records if r["dir"] == "in" and not r.get("framing")]
    assert captured  # some of it is the capture, not framing
