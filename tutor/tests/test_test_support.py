"""The tests' own support: the in-memory learner's playback speed, the one polling helper, and that
tests write nothing into the checkout."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from django.conf import settings

from tutor.realtime import wire
from tutor.realtime.audio import audio_ms
from tutor.testing.loopback import MemoryLearner
from tutor.testing.waits import until, wait_until
from tutor.tests.live import output_dir

REPO = Path(__file__).resolve().parents[2]


async def played(learner: MemoryLearner, ms: int) -> float:
    """Send one complete item of `ms` of audio; returns how long the learner took to play it."""
    started = time.monotonic()
    await learner.send_event(wire.audio_start("item_a", "tutor", "marin"))
    await learner.send_audio(bytes(48 * ms))
    await learner.send_event(wire.audio_end("item_a"))
    await until(lambda: learner.items["item_a"].finished, 10, "the item played to its end")
    return time.monotonic() - started


async def test_the_in_memory_learner_plays_faster_than_real_time_and_reports_like_the_page():
    learner = MemoryLearner()
    try:
        took = await played(learner, 3000)
    finally:
        await learner.close()
    assert took < 1.0  # 3 s of audio at 50x: about 60 ms
    # As the page: its start, a progress report about every 500 ms of audio played, its end.
    assert learner.reports[0] == ("start", "item_a", 0) and learner.reports[-1] == ("end", "item_a", 3000)
    progress = [ms for kind, _item, ms in learner.reports[1:-1] if kind == "progress"]
    assert len(progress) == len(learner.reports) - 2 and 5 <= len(progress) <= 6
    assert progress == sorted(progress) and all(ms >= 500 * (i + 1) for i, ms in enumerate(progress))
    assert audio_ms(len(learner.items["item_a"].audio)) == 3000


async def test_at_speed_1_the_in_memory_learner_plays_in_real_time():
    learner = MemoryLearner(speed=1.0)
    try:
        took = await played(learner, 600)
    finally:
        await learner.close()
    assert took >= 0.55
    assert learner.reports[-1] == ("end", "item_a", 600)


def test_wait_until_returns_the_first_truthy_value_or_fails_naming_what_it_waited_for():
    calls = []
    assert wait_until(lambda: calls.append(1) or (len(calls) >= 3 and "done"), 5, "three calls") == "done"
    started = time.monotonic()
    with pytest.raises(AssertionError, match="not within 0.2 s: the impossible"):
        wait_until(lambda: False, 0.2, "the impossible")
    assert time.monotonic() - started < 2


async def test_until_awaits_an_awaitable_condition():
    ready = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, ready.set)

    async def is_ready():
        return ready.is_set() and "ready"

    assert await until(is_ready, 5, "the event") == "ready"
    with pytest.raises(AssertionError, match="never"):
        await until(lambda: asyncio.sleep(0, result=None), 0.2, "never")


def test_tests_write_their_recordings_and_logs_outside_the_checkout():
    for path in (Path(settings.MEDIA_ROOT), output_dir()):
        assert not path.resolve().is_relative_to(REPO), path
