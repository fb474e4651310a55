"""What the learner hears comes from the page's playback reports, not from generation (issue 12).

The upstream generates audio faster than real time (the simulator's default pace, like the API), so
`response.output_audio.done` and `response.done` arrive while the page is still playing. Barge-in,
truncation, the tutor_speaking / listening state and "delivered" follow what the page reports. The
pure `Playback` on plain data first, then through the consumer, with the test playing the page.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from channels.testing import WebsocketCommunicator

from assessments.models import Assessment
from config.asgi import application
from tutor.realtime import clock
from tutor.realtime.clock import Clock
from tutor.realtime.playback import ASSUMED, FLUSHED, REPORTED, Playback
from tutor.realtime.simulator.knobs import SimulatorKnobs
from tutor.testing.learners import written_answer
from tutor.testing.realtime_client import start_simulator

from .test_end_to_end import speech_then_silence

FRAME_MS = 100  # one audio frame of the page and of the simulator's deltas


# --- the pure state ----------------------------------------------------------------------------------


def test_an_item_is_audible_from_its_first_frame_until_the_page_reports_its_end():
    playback = Playback(margin=1.0)
    assert playback.audible(0.0) is None
    playback.sent("item_a", "tutor", 4000, now=0.0)  # generated at once: 4 s to play
    playback.complete("item_a")
    assert playback.audible(0.1).item_id == "item_a"
    assert playback.report("item_a", "start", 0, now=0.2)
    assert playback.report("item_a", "progress", 2000, now=2.2)
    assert playback.audible(3.0).item_id == "item_a"  # generation ended long ago; the page still plays
    assert playback.report("item_a", "end", 4000, now=4.2)
    assert playback.audible(4.2) is None
    assert playback.outcome("item_a", 4.2) == REPORTED


def test_a_page_that_stops_reporting_is_taken_as_done_after_the_item_length_plus_the_margin():
    playback = Playback(margin=1.0)
    playback.sent("item_a", "tutor", 3000, now=10.0)
    playback.report("item_a", "progress", 1000, now=11.5)  # 0.5 s late: the bound follows the page
    assert playback.deadline(11.5) == pytest.approx(11.5 + 2.0 + 1.0)
    assert playback.audible(14.4) is not None
    assert playback.audible(14.6) is None
    assert playback.outcome("item_a", 14.6) == ASSUMED


def test_what_was_heard_follows_the_last_report_in_real_time_never_past_what_was_sent():
    playback = Playback(margin=1.0)
    playback.sent("item_a", "tutor", 3000, now=10.0)
    assert playback.heard_ms("item_a", 12.0) == 0  # the page never said it started: nothing is known heard
    playback.report("item_a", "progress", 1000, now=11.5)
    assert playback.heard_ms("item_a", 12.0) == 1500
    assert playback.heard_ms("item_a", 20.0) == 3000  # capped at what the page was sent
    assert playback.heard_ms("item_unknown", 12.0) == 0


def test_items_play_in_order_and_a_flush_ends_all_of_them():
    playback = Playback(margin=0.5)
    playback.sent("item_a", "tutor", 2000, now=0.0)
    playback.sent("item_b", "tutor", 1000, now=0.1)
    # b waits for a: it is expected to end at 2.0 + 1.0, its bound half a second later
    assert playback.deadline(0.1) == pytest.approx(2.5)  # a's bound comes first
    assert playback.audible(2.6).item_id == "item_b"
    assert playback.audible(3.6) is None
    assert not playback.report("item_z", "start", 0, now=1.0)  # never sent here: ignored
    playback.report("item_b", "start", 0, now=1.0)  # b playing: a is over
    assert playback.outcome("item_a", 1.0) == REPORTED
    playback.flushed()
    assert playback.audible(1.1) is None and playback.outcome("item_b", 1.1) == FLUSHED


# --- through the consumer ----------------------------------------------------------------------------

pytestmark_db = pytest.mark.django_db(transaction=True)


@pytest.fixture
def learner_headers(session_cookie_headers, learner_user):
    return session_cookie_headers(learner_user)


async def serve_upstream(settings, audio_ms: int, pace: float = SimulatorKnobs().pace):
    """A simulator at its default pace (faster than real time), every spoken response `audio_ms` long.
    Its tutor makes its record_probe call first, then speaks (one spoken item per reply: each item is
    `audio_ms` long, which the timings below count on)."""
    async with start_simulator(pace=pace, audio_ms_per_response=audio_ms, probe_shape="call_answer") as sim:
        settings.PARLA_REALTIME_URL = sim.url
        yield sim


@pytest.fixture
async def upstream(settings):
    async for sim in serve_upstream(settings, 4000):
        yield sim


@pytest.fixture
async def short_upstream(settings):
    """Audio generated at once (pace 0): faster than real time on any session clock."""
    async for sim in serve_upstream(settings, 2000, pace=0):
        yield sim


class Page:
    """The test plays the page: it reads the tutor socket and reports playback as the page does."""

    def __init__(self, communicator: WebsocketCommunicator):
        self.communicator = communicator
        self.events: list[tuple[float, dict]] = []
        self.audio: dict[str, int] = {}  # item_id -> bytes received
        self.current: str | None = None
        self.started_at: dict[str, float] = {}
        self.answer_flushes = True  # like the page; a test that answers them itself turns this off

    async def next(self, timeout: float = 10) -> dict:
        """The next JSON event (audio frames are counted on the way)."""
        while True:
            output = await self.communicator.receive_output(timeout=timeout)
            if output["type"] == "websocket.close":
                raise AssertionError(f"closed with {output.get('code')}")
            if output.get("bytes") is not None:
                self.audio[self.current] += len(output["bytes"])
                continue
            event = json.loads(output["text"])
            self.events.append((time.monotonic(), event))
            if event["type"] == "audio.start":
                self.current = event["item_id"]
                self.audio[self.current] = 0
                self.started_at[self.current] = time.monotonic()
            elif event["type"] == "playback.flush" and self.answer_flushes:
                item, self.current = self.current, None
                played = min(self.audio[item] // 48, int((time.monotonic() - self.started_at[item]) * 1000)) if item else 0
                await self.send({"type": "playback.flushed", "request_id": event["request_id"], "item_id": item,
                                 "played_ms": played})
            return event

    async def until(self, predicate, timeout: float = 10) -> dict:
        async with asyncio.timeout(timeout):
            while not predicate(event := await self.next(timeout)):
                pass
            return event

    async def quiet_for(self, seconds: float) -> list[dict]:
        """Every event in the next `seconds`."""
        seen = []
        try:
            async with asyncio.timeout(seconds):
                while True:
                    seen.append(await self.next(seconds))
        except TimeoutError:
            return seen

    async def report(self, item_id: str, kind: str, played_ms: int) -> None:
        await self.send({"type": "playback.report", "item_id": item_id, "kind": kind, "played_ms": played_ms})

    async def send(self, message: dict) -> None:
        await self.communicator.send_json_to(message)

    def states(self, since: float = 0.0) -> list[str]:
        return [e["state"] for at, e in self.events if e["type"] == "state" and at >= since]


async def started(headers) -> Page:
    communicator = WebsocketCommunicator(application, "/ws/tutor/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    page = Page(communicator)
    assert (await page.next())["state"] == "ready"
    await page.send({"type": "session.start"})
    return page


def is_type(kind: str, **fields):
    return lambda e: e["type"] == kind and all(e.get(k) == v for k, v in fields.items())


async def greeting_generated(page: Page) -> str:
    """The tutor's greeting: the page starts playing it; returns its item id once it is all generated."""
    item = (await page.until(is_type("audio.start", role="tutor")))["item_id"]
    await page.report(item, "start", 0)
    await page.until(is_type("audio.end", item_id=item))  # the upstream has generated all of it
    assert page.audio[item] == 4000 * 48
    return item


async def truncated_record(caplog, item_id: str, timeout: float = 5) -> logging.LogRecord:
    """The simulator's own record of truncating `item_id` (it then sends conversation.item.truncated)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in caplog.records:
            if record.name == "tutor.realtime.simulator" and record.getMessage() == "item truncated" and (
                record.item_id == item_id
            ):
                return record
        await asyncio.sleep(0.02)  # a test may poll; protocol code waits for events
    raise AssertionError(f"{item_id} was not truncated upstream")


@pytestmark_db
async def test_speaking_over_the_tutor_after_its_reply_was_generated_cuts_it_where_the_page_was(
    upstream, learner_headers, caplog
):
    caplog.set_level(logging.INFO, logger="tutor.realtime.simulator")
    page = await started(learner_headers)
    try:
        item = await greeting_generated(page)  # response.done follows at once: generation is over
        await page.report(item, "progress", 1500)
        page.answer_flushes = False
        for frame in speech_then_silence():  # the learner talks over the tutor's greeting
            await page.communicator.send_to(bytes_data=frame)
        flush = await page.until(is_type("playback.flush"))
        await page.send({"type": "playback.flushed", "request_id": flush["request_id"], "item_id": item,
                         "played_ms": 1600})
        record = await truncated_record(caplog, item)
        assert abs(record.audio_end_ms - 1600) <= FRAME_MS  # where the page stopped, not where generation did
    finally:
        await page.communicator.disconnect()


@pytestmark_db
async def test_a_page_that_does_not_answer_the_flush_is_cut_where_its_last_report_says_without_an_error(
    upstream, learner_headers, caplog, settings
):
    settings.PARLA_STEP_TIMEOUT = 1.0
    caplog.set_level(logging.INFO)
    page = await started(learner_headers)
    try:
        item = await greeting_generated(page)
        await page.report(item, "progress", 1500)
        reported = time.monotonic()
        page.answer_flushes = False  # a page that never answers `playback.flush`
        for frame in speech_then_silence():
            await page.communicator.send_to(bytes_data=frame)
        flush = await page.until(is_type("playback.flush"))
        record = await truncated_record(caplog, item, timeout=settings.PARLA_STEP_TIMEOUT + 5)
        # Where the page's last report, played on in real time, put the learner at the flush.
        assert 1500 <= record.audio_end_ms <= 1500 + (time.monotonic() - reported) * 1000
        # The page answers at last (a slow page, or a server too loaded to read it in time): late, not wrong.
        await page.send({"type": "playback.flushed", "request_id": flush["request_id"], "item_id": item,
                         "played_ms": 1600})
        later = await page.quiet_for(0.5)
        # A request id the server never sent is still refused.
        await page.send({"type": "playback.flushed", "request_id": "flush_999", "item_id": item, "played_ms": 1})
        refused = await page.until(is_type("error"), timeout=5)
    finally:
        await page.communicator.disconnect()
    assert [e for e in later if e["type"] == "error"] == []  # its late answer is no error either
    (late,) = [r for r in caplog.records if r.getMessage() == "late playback flush answer ignored"]
    assert late.request_id == flush["request_id"]
    seen = [event for _at, event in page.events if event is not refused]
    assert [e for e in seen if e["type"] == "error"] == []  # the page's silence is not the learner's failure
    assert refused["code"] == "unknown_request"
    warnings = [r for r in caplog.records if r.getMessage() == "flush not answered: truncating at the page's last report"]
    assert len(warnings) == 1 and warnings[0].item_id == item
    assert not [r for r in caplog.records if r.getMessage() == "session task failed"]


@pytestmark_db
async def test_the_state_follows_what_the_page_plays_not_what_the_upstream_generated(upstream, learner_headers):
    page = await started(learner_headers)
    try:
        item = await greeting_generated(page)
        await page.quiet_for(0.8)  # response.done has come and gone; the page is still playing
        assert page.states()[-1] == "tutor_speaking"
        await page.report(item, "end", 4000)
        assert (await page.until(is_type("state")))["state"] == "listening"

        # A written answer: the reply records a probe (a function call), then speaks. The state turns
        # to tutor_speaking once, when its audio comes, and never flips back and forth around the call.
        answered = time.monotonic()
        await page.send({"type": "answer.text", "text": "Me llamo Ana y vivo en Madrid con mi familia."})
        reply = (await page.until(is_type("audio.start", role="tutor")))["item_id"]
        await page.report(reply, "start", 0)
        await page.until(is_type("audio.end", item_id=reply))
        await page.quiet_for(0.5)
        assert page.states(since=answered) == ["tutor_speaking"]
    finally:
        await page.communicator.disconnect()


async def answered_twice(page: Page) -> None:
    """Evidence for a level: with fewer rated answers a session is not rated and no summary is spoken
    (issue 10). The learner writes two answers, each after the tutor's next question was generated."""
    for _ in range(2):
        await page.send({"type": "answer.text", "text": written_answer("B1")})
        item = (await page.until(is_type("audio.start", role="tutor"), timeout=20))["item_id"]
        await page.until(is_type("audio.end", item_id=item), timeout=20)


async def summary_generated(page: Page, *, report: bool) -> tuple[str, float]:
    """Stop: the summary is spoken by the narrator; returns its item id and when its audio began."""
    await page.send({"type": "session.stop"})
    start = await page.until(is_type("audio.start", role="narrator"), timeout=20)
    began = time.monotonic()
    if report:
        await page.report(start["item_id"], "start", 0)
    await page.until(is_type("audio.end", item_id=start["item_id"]))
    return start["item_id"], began


@pytestmark_db
async def test_the_summary_is_delivered_only_when_the_page_reports_it_played_to_its_end(upstream, learner_headers):
    page = await started(learner_headers)
    try:
        await greeting_generated(page)
        await answered_twice(page)
        item, _began = await summary_generated(page, report=True)  # the level
        # The feedback follows as a second narrator item (the level is spoken while grading runs).
        feedback = (await page.until(is_type("audio.start", role="narrator"), timeout=20))["item_id"]
        await page.report(feedback, "start", 0)
        await page.until(is_type("audio.end", item_id=feedback))
        waited = await page.quiet_for(1.0)  # all of it generated; the learner has heard a part
        assert not [e for e in waited if e["type"] == "assessment" and e["status"] == "delivered"]
        await page.report(item, "end", 4000)
        waited = await page.quiet_for(0.5)  # the level heard, the feedback not yet: not delivered
        assert not [e for e in waited if e["type"] == "assessment" and e["status"] == "delivered"]
        reported = time.monotonic()
        await page.report(feedback, "end", 4000)
        card = await page.until(is_type("assessment", status="delivered"), timeout=3)
        assert time.monotonic() - reported < 2.0  # at the report, not at a timeout
        assessment = await Assessment.objects.aget(pk=card["id"])
        assert assessment.status == Assessment.Status.DELIVERED
        assert assessment.failure_reason == ""  # heard: nothing to note
        assert (await page.until(is_type("state")))["state"] == "ended"
    finally:
        await page.communicator.disconnect()


@pytestmark_db
async def test_a_page_that_never_reports_gets_the_summary_delivered_after_its_length_with_a_note(
    short_upstream, learner_headers, settings
):
    """On a session clock 8 times as fast as the wall (tutor.realtime.clock): the server waits out the
    summary's length plus the margin in its own time, so the test waits an eighth of it."""
    settings.PARLA_PLAYBACK_MARGIN = 0.5
    speed = 8.0
    with clock.installed(Clock(speed=speed)):
        page = await started(learner_headers)
        try:
            await page.until(is_type("audio.end"))  # the greeting; this page reports nothing
            await answered_twice(page)
            _item, began = await summary_generated(page, report=False)
            card = await page.until(is_type("assessment", status="delivered"), timeout=10)
            waited = (time.monotonic() - began) * speed  # on the session clock
            length = 2 * 2.0  # the level and the feedback, 2 s each, played one after the other
            # the summary's length plus the margin (and some slack, in wall seconds)
            assert length <= waited < length + 0.5 + 2.0 * speed / 4
            assessment = await Assessment.objects.aget(pk=card["id"])
            assert assessment.status == Assessment.Status.DELIVERED
            assert "did not report the end of the summary" in assessment.failure_reason
        finally:
            await page.communicator.disconnect()
