"""SpeechRelay and FlushRequests on plain events (no socket)."""

import asyncio

import base64

from pydantic import TypeAdapter
from openai.types.realtime import RealtimeServerEvent

from tutor.testing.loopback import MemoryLearner
from tutor.realtime.relay import FlushRequests, PlaybackPosition, SpeechRelay

parse = TypeAdapter(RealtimeServerEvent).validate_python


def delta(item, pcm=b"\x01\x00" * 480):
    return parse({"type": "response.output_audio.delta", "event_id": "e", "response_id": "r", "item_id": item,
                  "output_index": 0, "content_index": 0, "delta": base64.b64encode(pcm).decode()})


def transcript_done(item, text):
    return parse({"type": "response.output_audio_transcript.done", "event_id": "e", "response_id": "r",
                  "item_id": item, "output_index": 0, "content_index": 0, "transcript": text})


async def test_relay_announces_each_item_then_forwards_its_audio():
    learner = MemoryLearner()
    relay = SpeechRelay(learner, role="tutor", voice=lambda: "marin")
    assert await relay.handle(delta("item_1"))
    assert await relay.handle(delta("item_1"))
    assert [e["type"] for e in learner.events] == ["audio.start"]
    assert learner.events[0] == {"type": "audio.start", "item_id": "item_1", "voice": "marin", "role": "tutor"}
    assert len(learner.items["item_1"].audio) == 2 * 960
    await learner.close()


async def test_muted_relay_forwards_nothing_but_still_records_the_transcript():
    learner = MemoryLearner()
    said = []

    async def on_transcript(role, item_id, text):
        said.append((role, item_id, text))

    relay = SpeechRelay(learner, role="tutor", voice=lambda: "marin", on_transcript=on_transcript)
    relay.mute()
    await relay.handle(delta("item_1"))
    await relay.handle(transcript_done("item_1", "Hola"))
    assert learner.events == [] and learner.timeline == []
    assert said == [("tutor", "item_1", "Hola")]


async def test_silenced_item_drops_late_deltas_and_the_next_item_is_announced():
    learner = MemoryLearner()
    relay = SpeechRelay(learner, role="tutor", voice=lambda: "marin")
    await relay.handle(delta("item_1"))
    assert relay.silence_current() == "item_1"
    await relay.handle(delta("item_1"))
    await relay.handle(delta("item_2"))
    assert [e["item_id"] for e in learner.events if e["type"] == "audio.start"] == ["item_1", "item_2"]
    assert len(learner.items["item_1"].audio) == 960
    await learner.close()


async def test_flush_requests_are_matched_by_request_id():
    sent = []

    async def send(event):
        sent.append(event)

    flushes = FlushRequests()
    first = await flushes.request(send)
    second = await flushes.request(send)
    assert [e["request_id"] for e in sent] == ["flush_1", "flush_2"]
    assert flushes.answer("flush_2", "item_9", 120)
    assert not flushes.answer("flush_2", "item_9", 120)  # duplicate
    assert not flushes.answer("flush_77", None, 0)  # made up
    assert second.result() == PlaybackPosition("item_9", 120)
    assert not first.done()
    assert not flushes.given_up("flush_2") and not flushes.given_up("flush_77")


async def test_a_flush_given_up_is_known_so_its_late_answer_is_no_error():
    async def send(event):
        pass

    flushes = FlushRequests()
    futures = [await flushes.request(send) for _ in range(FlushRequests.GIVEN_UP_KEPT + 2)]
    futures[0].cancel()  # its waiter stopped waiting (the session ended, a step timed out)
    futures[1].cancel()
    await asyncio.sleep(0)  # done callbacks run on the next turn of the loop
    assert not flushes.answer("flush_1", "item_1", 40)  # nothing waits for it any more...
    assert flushes.given_up("flush_1")  # ...but it was this browser's, and only late
    for future in futures[2 : FlushRequests.GIVEN_UP_KEPT + 1]:  # 31 more: flush_1 is the oldest, dropped
        future.cancel()
    await asyncio.sleep(0)
    assert not flushes.given_up("flush_1") and flushes.given_up("flush_2")  # only the latest are kept
