"""A learner whose placement outlives its connection, as the page does it (static/tutor/session.js):
it keeps the session id the server sends (`session`), and after an unexpected close (its network cut,
or 4012 from a draining process) it reconnects and sends `session.resume` with it.

The learner answers in writing with the texts of its true level, after `think` seconds (at simulator
pace 0 and playback heard 20x faster, a learner answering at once would outrun the written-answer rate
limit, and a refused answer would stall the placement: tutor/tests/test_metrics.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import websockets
from django.utils import timezone

from tutor.testing.learners import written_answer
from tutor.tests.test_end_to_end import PagePlayback, tutor_socket

RECONNECT_DELAYS = (0.5, 1.0, 2.0)  # the page's backoff (socket.js), shortened


@dataclass
class Journey:
    """What one learner saw over all its connections."""

    events: list[dict] = field(default_factory=list)
    connections: int = 0
    answers: int = 0  # answers sent
    close_codes: list[int | None] = field(default_factory=list)
    session_id: int | None = None
    resumed: int = 0  # connections that continued the session (`session` with resumed=true)
    ladder_at_cut: dict | None = None  # the ladder last shown before a cut
    ladder_after_resume: dict | None = None  # the first ladder shown after a resume
    cut_at: datetime | None = None  # when the test cut the connection

    def of_type(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    @property
    def level_events(self) -> int:
        return len(self.of_type("level"))


async def placement(
    base_url: str, cookie: str, *, level: str, think: float = 0.6, timeout: float = 120,
    cut: Callable[[Journey], bool] | None = None, cut_seconds: float = 3.0,
) -> Journey:
    """A learner of `level` through its whole placement, until its assessment is final and the session
    ended. `cut(journey)`, asked after each event: True cuts the TCP connection there (no close frame),
    for `cut_seconds`, then the learner reconnects and resumes (once)."""
    journey = Journey()
    deadline = time.monotonic() + timeout
    attempt = 0
    while time.monotonic() < deadline:
        outcome = await _one_connection(base_url, cookie, journey, level, think, deadline, cut)
        if outcome == "done":
            return journey
        if outcome == "cut":
            cut = None
            await asyncio.sleep(cut_seconds)  # the learner's network is gone this long (the scenario's own time)
            continue
        await asyncio.sleep(RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)])  # the page's backoff
        attempt += 1
    raise AssertionError(f"no final assessment within {timeout} s; last events: {journey.events[-8:]}")


async def _one_connection(base_url, cookie, journey: Journey, level, think, deadline, cut) -> str:
    """One connection: "done" (assessment final, session ended), "cut" (the test cut it), or "closed"."""
    try:
        ws = await tutor_socket(base_url, cookie).__aenter__()
    except (OSError, websockets.InvalidStatus, websockets.InvalidHandshake):
        journey.close_codes.append(None)
        return "closed"
    journey.connections += 1
    page = PagePlayback(ws)
    answer_at = None
    final = False
    try:
        while time.monotonic() < deadline:
            wait = deadline - time.monotonic() if answer_at is None else max(0.0, answer_at - time.monotonic())
            got = await page.recv(wait)
            if isinstance(got, dict):
                event = got
                journey.events.append(event)
                kind = event["type"]
                if kind == "state" and event["state"] == "ready":
                    if journey.session_id is None:
                        await ws.send(json.dumps({"type": "session.start"}))
                    else:
                        await ws.send(json.dumps({"type": "session.resume", "session_id": journey.session_id}))
                elif kind == "session":
                    journey.session_id = event["session_id"]
                    journey.resumed += event["resumed"]
                elif kind == "level" and journey.resumed and journey.ladder_after_resume is None:
                    journey.ladder_after_resume = event["ladder"]
                elif kind == "assessment" and event["status"] in ("delivered", "delivery_failed", "not_rated"):
                    final = True
                elif kind == "state" and event["state"] == "ended":
                    if final:
                        await ws.close()
                        return "done"
                elif kind == "state":
                    answer_at = time.monotonic() + think if event["state"] == "listening" else None
                if cut is not None and cut(journey):
                    levels = journey.of_type("level")
                    journey.ladder_at_cut = levels[-1]["ladder"] if levels else None
                    journey.cut_at = timezone.now()
                    ws.transport.abort()  # the TCP connection is gone, without a close frame
                    journey.close_codes.append("cut")
                    return "cut"
            if answer_at is not None and time.monotonic() >= answer_at:
                answer_at = None
                await ws.send(json.dumps({"type": "answer.text", "text": written_answer(level)}))
                journey.answers += 1
    except websockets.ConnectionClosed:
        journey.close_codes.append(ws.close_code)
        return "closed"
    raise AssertionError(f"no final assessment in time; last events: {journey.events[-8:]}")
