"""ResponseTracker on plain event sequences (no socket), parsed with the openai models."""

import base64

import pytest
from pydantic import TypeAdapter
from openai.types.realtime import RealtimeServerEvent

from tutor.realtime.audio import audio_ms
from tutor.realtime.tracker import ResponseTracker

_parse = TypeAdapter(RealtimeServerEvent).validate_python
_n = iter(range(10**9))


def ev(type_, **fields):
    return _parse({"type": type_, "event_id": f"event_{next(_n)}", **fields})


def response(rid, status="in_progress", conversation_id="conv_1", reason=None):
    body = {"id": rid, "object": "realtime.response", "status": status, "conversation_id": conversation_id, "output": []}
    if reason:
        body["status_details"] = {"type": status, "reason": reason}
    return body


def item(iid, type_="message", role="assistant"):
    if type_ == "function_call":
        return {"id": iid, "type": "function_call", "call_id": "call_1", "name": "record_probe", "arguments": "{}"}
    return {"id": iid, "type": "message", "role": role, "content": []}


def audio(rid, iid, ms):
    pcm = b"\x01\x00" * (24 * ms)
    return ev("response.output_audio.delta", response_id=rid, item_id=iid, output_index=0, content_index=0,
              delta=base64.b64encode(pcm).decode())


def speaking(tracker, rid="resp_1", iid="item_1", ms=300):
    for e in [
        ev("response.created", response=response(rid)),
        ev("response.output_item.added", response_id=rid, output_index=0, item=item(iid)),
        ev("conversation.item.added", item=item(iid)),
        audio(rid, iid, ms),
    ]:
        tracker.feed(e)


def done(rid, status="completed", reason=None):
    return ev("response.done", response=response(rid, status, reason=reason))


def test_fresh_session_has_no_active_response_and_never_spoke():
    t = ResponseTracker()
    assert t.active_response_id is None
    assert not t.assistant_audio_produced
    assert not t.may_produce_audio


def test_response_lifecycle_sets_and_clears_active_response():
    t = ResponseTracker()
    speaking(t)
    assert t.active_response_id == "resp_1"
    assert t.assistant_audio_produced
    assert t.item("item_1").audio_ms == 300
    t.feed(done("resp_1"))
    assert t.active_response_id is None
    assert t.assistant_audio_produced  # the voice rule: once spoken, always spoken


def test_audio_is_counted_per_item_across_deltas():
    t = ResponseTracker()
    speaking(t, ms=100)
    t.feed(audio("resp_1", "item_1", 250))
    assert t.item("item_1").audio_ms == 350
    assert t.last_audio_item_id == "item_1"


def test_odd_byte_counts_and_padding_are_measured_exactly():
    t = ResponseTracker()
    pcm = b"\x00" * 4801  # 1 byte over 100 ms, forces base64 padding
    t.feed(ev("response.output_audio.delta", response_id="r", item_id="i", output_index=0, content_index=0,
              delta=base64.b64encode(pcm).decode()))
    assert t.item("i").audio_bytes == 4801
    assert audio_ms(4801) == 100


def test_duplicate_response_done_is_harmless():
    t = ResponseTracker()
    speaking(t)
    t.feed(done("resp_1", "cancelled", "client_cancelled"))
    t.feed(done("resp_1", "cancelled", "client_cancelled"))
    assert t.active_response_id is None
    assert t.responses["resp_1"].status_reason == "client_cancelled"


def test_late_created_after_done_never_reactivates():
    t = ResponseTracker()
    t.feed(done("resp_9"))
    t.feed(ev("response.created", response=response("resp_9")))
    assert t.active_response_id is None


def test_delta_before_created_creates_response_lazily():
    t = ResponseTracker()
    t.feed(audio("resp_2", "item_2", 100))
    assert t.active_response_id == "resp_2"
    t.feed(ev("response.created", response=response("resp_2")))
    t.feed(done("resp_2"))
    assert t.active_response_id is None


def test_out_of_band_response_is_not_the_active_default_response():
    t = ResponseTracker()
    t.feed(ev("response.created", response=response("resp_oob", conversation_id=None)))
    assert t.active_response_id is None
    speaking(t, rid="resp_main", iid="item_main")
    assert t.active_response_id == "resp_main"


def test_newest_of_two_active_responses_is_reported():
    t = ResponseTracker()
    speaking(t, rid="resp_a", iid="item_a")
    speaking(t, rid="resp_b", iid="item_b")
    assert t.active_response_id == "resp_b"
    t.feed(done("resp_b"))
    assert t.active_response_id == "resp_a"


def test_pending_response_create_counts_until_created_or_refused():
    t = ResponseTracker()
    t.sent({"type": "response.create", "event_id": "e1"})
    assert t.pending_creates == 1 and t.may_produce_audio
    t.feed(ev("response.created", response=response("resp_1")))
    assert t.pending_creates == 0
    t.sent({"type": "response.create", "event_id": "e2"})
    t.feed(ev("error", error={"type": "invalid_request_error", "code": "conversation_already_has_active_response",
                              "message": "x", "event_id": "e2"}))
    assert t.pending_creates == 0


def test_out_of_band_create_is_not_pending_for_the_default_conversation():
    t = ResponseTracker()
    t.sent({"type": "response.create", "event_id": "e1", "response": {"conversation": "none"}})
    assert t.pending_creates == 0


def test_truncatable_only_for_known_assistant_audio_cut_short():
    t = ResponseTracker()
    speaking(t, ms=1000)
    assert t.is_truncatable("item_1", 400)
    assert not t.is_truncatable("item_1", 1000)  # played to the end: nothing to cut
    assert not t.is_truncatable("item_1", 1200)  # beyond the audio: the API would refuse it
    assert not t.is_truncatable("unknown", 10)  # never a dummy id
    assert not t.is_truncatable(None, 10)
    t.feed(ev("conversation.item.truncated", item_id="item_1", content_index=0, audio_end_ms=400))
    assert not t.is_truncatable("item_1", 300)  # already truncated


def test_an_item_being_truncated_is_not_truncatable_until_the_answer():
    t = ResponseTracker()
    speaking(t, ms=1000)
    t.sent({"type": "conversation.item.truncate", "event_id": "evt_1", "item_id": "item_1", "content_index": 0,
            "audio_end_ms": 0})
    assert not t.is_truncatable("item_1", 400)  # a second cut would race the first
    t.feed(ev("error", error={"type": "invalid_request_error", "code": "invalid_value", "message": "x",
                              "event_id": "evt_1"}))
    assert t.is_truncatable("item_1", 400)  # refused: nothing was cut, it may be cut again
    t.sent({"type": "conversation.item.truncate", "event_id": "evt_2", "item_id": "item_1", "content_index": 0,
            "audio_end_ms": 200})
    t.feed(ev("conversation.item.truncated", item_id="item_1", content_index=0, audio_end_ms=200))
    assert t.items["item_1"].truncated_at_ms == 200 and t.items["item_1"].truncate_event_id is None
    assert not t.is_truncatable("item_1", 100)


def test_deleted_item_is_not_truncatable():
    t = ResponseTracker()
    speaking(t, ms=1000)
    t.feed(ev("conversation.item.deleted", item_id="item_1"))
    assert not t.is_truncatable("item_1", 100)


def test_function_call_item_is_not_audio():
    t = ResponseTracker()
    t.feed(ev("response.created", response=response("resp_f")))
    t.feed(ev("response.output_item.added", response_id="resp_f", output_index=0, item=item("fc_1", "function_call")))
    assert t.item("fc_1").type == "function_call"
    assert not t.is_truncatable("fc_1", 0)
    assert not t.assistant_audio_produced


def test_session_updated_records_voice():
    t = ResponseTracker()
    t.feed(ev("session.updated", session={"type": "realtime", "audio": {"output": {"voice": "alloy"}}}))
    assert t.voice == "alloy"


def test_mark_finished_clears_a_stale_active_response():
    t = ResponseTracker()
    speaking(t)
    t.mark_finished("resp_1")
    assert t.active_response_id is None


@pytest.mark.parametrize("order", [0, 1])
def test_transcript_accumulates(order):
    t = ResponseTracker()
    speaking(t)
    parts = ["Hola ", "Ana"] if order == 0 else ["Hola", " amigo"]
    for p in parts:
        t.feed(ev("response.output_audio_transcript.delta", response_id="resp_1", item_id="item_1",
                  output_index=0, content_index=0, delta=p))
    assert t.item("item_1").transcript == "".join(parts)


def added(rid, index, body):
    return ev("response.output_item.added", response_id=rid, output_index=index, item=body)


def test_a_reply_that_speaks_after_its_call_needs_no_second_response():
    """The gpt-realtime-2 shape: preamble, call, answer in one response."""
    t = ResponseTracker()
    t.feed(ev("response.created", response=response("resp_1")))
    t.feed(added("resp_1", 0, item("item_pre")))
    t.feed(audio("resp_1", "item_pre", 200))
    t.feed(added("resp_1", 1, item("item_call", "function_call")))
    assert t.calls_of("resp_1") == ["call_1"] and not t.spoke_after_calls("resp_1")  # the preamble came before
    t.feed(added("resp_1", 2, item("item_answer")))
    assert not t.spoke_after_calls("resp_1")  # added, nothing said yet
    t.feed(audio("resp_1", "item_answer", 300))
    assert t.spoke_after_calls("resp_1")


def test_a_reply_that_only_calls_needs_a_response_after_the_output():
    t = ResponseTracker()
    t.feed(ev("response.created", response=response("resp_1")))
    t.feed(added("resp_1", 0, item("item_call", "function_call")))
    t.feed(done("resp_1"))
    assert t.calls_of("resp_1") == ["call_1"] and not t.spoke_after_calls("resp_1")
    speaking(t, "resp_2", "item_2")
    assert t.calls_of("resp_2") == [] and t.calls_of("resp_unknown") == []
