"""The learner socket's send queue (tutor.backpressure): held back while the transport is full, in
order, and given up on a browser that reads nothing. The live test against Daphne is in
test_socket_robustness.py; these drive the queue with a TransportWatch as the transport would."""

import asyncio

import pytest
from autobahn.exception import Disconnected

from tutor.backpressure import SendQueue, TransportWatch, daphne_socket


class Recorder:
    def __init__(self):
        self.sent: list[dict] = []
        self.stuck: list[str] = []

    async def send(self, message):
        self.sent.append(message)

    async def on_stuck(self, reason):
        self.stuck.append(reason)


def frame(n: int, size: int = 1000) -> dict:
    return {"type": "websocket.send", "bytes": bytes([n % 256]) * size}


def queue_of(rec, watch, *, max_bytes=10_000, max_stall=5.0):
    return SendQueue(rec.send, watch, max_bytes=max_bytes, max_stall=max_stall, on_stuck=rec.on_stuck)


async def test_messages_wait_while_the_transport_is_paused_and_go_out_in_order_once_it_drained():
    rec, watch = Recorder(), TransportWatch(asyncio.get_running_loop().time)
    queue = queue_of(rec, watch)
    await queue.put(frame(0))
    watch.pauseProducing()
    for n in range(1, 4):
        await queue.put(frame(n))
    assert len(rec.sent) == 1 and queue.queued_bytes == 3000
    watch.resumeProducing()
    async with asyncio.timeout(2):
        while len(rec.sent) < 4:
            await asyncio.sleep(0)
    assert [m["bytes"][0] for m in rec.sent] == [0, 1, 2, 3] and queue.queued_bytes == 0
    await queue.put(frame(4))  # writable and nothing waiting: straight out
    assert rec.sent[-1]["bytes"][0] == 4 and not rec.stuck
    await queue.aclose()


async def test_a_transport_paused_longer_than_the_stall_limit_means_the_browser_is_not_reading():
    rec, watch = Recorder(), TransportWatch(asyncio.get_running_loop().time)
    queue = queue_of(rec, watch, max_stall=0.2)
    watch.pauseProducing()
    await queue.put(frame(1))
    async with asyncio.timeout(2):
        while not rec.stuck:
            await asyncio.sleep(0.01)
    assert "read nothing" in rec.stuck[0] and rec.sent == []
    await queue.put(frame(2))  # given up: dropped, not queued
    assert queue.queued_bytes == 0 and rec.sent == [] and len(rec.stuck) == 1
    await queue.aclose()


async def test_more_than_max_bytes_waiting_means_the_browser_is_not_reading():
    rec, watch = Recorder(), TransportWatch(asyncio.get_running_loop().time)
    queue = queue_of(rec, watch, max_bytes=2500)
    watch.pauseProducing()
    for n in range(3):
        await queue.put(frame(n))
    await queue.aclose()  # awaits the verdict
    assert rec.stuck == ["3000 bytes waiting for the browser"] and queue.queued_bytes == 0


async def test_flush_sends_what_waits_before_a_close():
    rec, watch = Recorder(), TransportWatch(asyncio.get_running_loop().time)
    queue = queue_of(rec, watch)
    watch.pauseProducing()
    await queue.put(frame(1))
    await queue.put({"type": "websocket.send", "text": "bye"})
    await queue.flush()
    assert [m.get("text") or m["bytes"][0] for m in rec.sent] == [1, "bye"] and not rec.stuck
    await queue.aclose()


async def test_without_a_transport_view_everything_goes_straight_out():
    rec = Recorder()
    queue = queue_of(rec, None, max_bytes=10)
    for n in range(5):
        await queue.put(frame(n))
    assert len(rec.sent) == 5 and not rec.stuck


@pytest.mark.parametrize("error", [Disconnected("Attempt to send on a closed protocol"), ConnectionResetError()])
async def test_a_send_on_a_connection_the_browser_closed_is_dropped_not_raised(error):
    """The browser closed its socket while the tutor was speaking, and the disconnect has not reached
    the consumer yet: Daphne raises on send (autobahn's Disconnected; the ASGI spec says an OSError).
    That is the learner leaving, not a server error: nothing raises, nothing more is sent, and the
    queue is not "stuck" (which would close with 4008)."""
    rec, watch = Recorder(), TransportWatch(asyncio.get_running_loop().time)
    calls = []

    async def send(message):
        calls.append(message)
        if len(calls) >= 2:
            raise error
        rec.sent.append(message)

    queue = SendQueue(send, watch, max_bytes=10_000, max_stall=5.0, on_stuck=rec.on_stuck)
    await queue.put(frame(0))
    await queue.put(frame(1))  # the browser is gone
    await queue.put(frame(2))
    watch.pauseProducing()
    await queue.put(frame(3))
    await queue.flush()
    assert [m["bytes"][0] for m in rec.sent] == [0] and len(calls) == 2
    assert queue.gone and not queue.stuck and not rec.stuck and queue.queued_bytes == 0
    await queue.aclose()


def test_only_daphnes_send_names_a_socket():
    async def send(message):
        pass

    assert daphne_socket(send) is None
