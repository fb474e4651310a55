"""The loop watch (tutor/loopwatch.py): the server's own measure of its event loop's stalls.

`LagStats` is checked against lags whose quantiles are known; `LoopWatch` runs on a real loop that
is really blocked (a synchronous sleep inside a task, as a slow handler would block it). That a
Daphne server runs it and logs its figures when it stops is checked by test_load_bench, which reads
them from a real server's log.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import time

import pytest

from tutor.loopwatch import EDGES_MS, LagStats, LoopWatch


def test_quantiles_are_within_a_bucket_of_the_true_ones():
    rng = random.Random(7)
    lags = [rng.expovariate(1 / 3.0) for _ in range(20_000)]  # ms; a long tail like a busy loop's
    stats = LagStats(stall_ms=20)
    for lag in lags:
        stats.record(lag)
    ordered = sorted(lags)
    for q in (0.5, 0.9, 0.99, 0.999):
        true = ordered[round(q * len(ordered)) - 1]
        assert true <= stats.quantile(q) <= true * 1.1 + 0.1, q
    assert stats.max_ms == max(lags) and stats.quantile(1.0) == max(lags)
    stalls = [lag for lag in lags if lag >= 20]
    assert stats.stalls == len(stalls) > 0
    assert stats.stalled_ms == pytest.approx(sum(stalls))


def test_no_tick_no_quantile_and_extremes_are_kept():
    stats = LagStats(stall_ms=100)
    assert stats.quantile(0.5) is None and stats.fields()["p99_ms"] is None
    stats.record(-0.3)  # a tick a little early reads as no lag
    stats.record(EDGES_MS[-1] * 3)  # past the last bucket: counted, and the maximum is exact
    assert stats.ticks == 2 and stats.counts[0] == 1 and stats.counts[-1] == 1
    assert stats.quantile(0.5) == EDGES_MS[0]  # at most the first bucket's edge
    assert stats.quantile(0.99) == stats.max_ms == EDGES_MS[-1] * 3
    assert stats.fields() == {"ticks": 2, "p50_ms": round(EDGES_MS[0], 2), "p99_ms": round(EDGES_MS[-1] * 3, 2),
                              "max_ms": round(EDGES_MS[-1] * 3, 2), "stalls": 1,
                              "stalled_ms": round(EDGES_MS[-1] * 3, 1), "stall_threshold_ms": 100}


async def test_a_blocked_loop_is_logged_as_a_stall_and_the_run_when_it_stops(caplog):
    caplog.set_level(logging.INFO, logger="tutor.loopwatch")
    watch = LoopWatch(stall_ms=200, tick=0.005, report_every=0.05)
    watch.start()
    await asyncio.sleep(0.06)  # ticks on an idle loop
    time.sleep(0.3)  # the loop is blocked, as a slow handler would block it
    await asyncio.sleep(0.1)  # the late tick runs, then the window's report
    await watch.stop()

    assert watch.task.done()
    assert [t for t in asyncio.all_tasks() if t.get_name() == "loop-watch"] == []
    # The stall is one late tick of about the blocked time; the idle ticks were not late.
    assert watch.total.stalls == 1
    assert 290 <= watch.total.stalled_ms == watch.total.max_ms < 1000
    assert watch.total.ticks >= 10 and watch.total.quantile(0.5) < 20

    stalled = [r for r in caplog.records if r.getMessage() == "event loop stalled"]
    assert len(stalled) == 1 and stalled[0].levelno == logging.WARNING
    assert stalled[0].stalls == 1 and stalled[0].max_ms >= 290
    (summary,) = [r for r in caplog.records if r.getMessage() == "event loop lag"]
    assert summary.ticks == watch.total.ticks and summary.stalls == 1 and summary.max_ms >= 290


async def test_an_idle_loop_logs_no_stall(caplog):
    caplog.set_level(logging.INFO, logger="tutor.loopwatch")
    watch = LoopWatch(stall_ms=500, tick=0.005, report_every=0.02)
    watch.start()
    await asyncio.sleep(0.15)
    await watch.stop()
    assert watch.total.ticks >= 10 and watch.total.stalls == 0
    assert [r.getMessage() for r in caplog.records] == ["event loop lag"]


async def test_the_collectors_pauses_are_timed_while_it_runs(caplog):
    caplog.set_level(logging.INFO, logger="tutor.loopwatch")
    watch = LoopWatch(stall_ms=500, tick=0.005)
    watch.start()
    garbage = [[i] for i in range(200_000)]  # a full collection has these to look at
    gc.collect()
    gc.collect(0)
    del garbage
    await asyncio.sleep(0.02)
    await watch.stop()
    assert watch.gc.callback not in gc.callbacks  # removed with the task
    assert watch.gc.counts[2] >= 1 and watch.gc.counts[0] >= 1
    assert watch.gc.max_ms[2] > 0 and watch.gc.total_ms[2] >= watch.gc.max_ms[2]
    (summary,) = [r for r in caplog.records if r.getMessage() == "event loop lag"]
    assert summary.gc_counts == watch.gc.counts and summary.gc_ms[2] > 0
    gc.collect()
    assert summary.gc_counts == watch.gc.counts  # nothing counted after stop


def test_overload_is_many_recent_stalls_not_one_long_pause():
    from tutor.loopwatch import MIN_RECENT_STALLS

    watch = LoopWatch(stall_ms=100, recent_seconds=10)
    watch.record(100.0, 5_000)  # one long pause (the first session's imports): half the window
    assert watch.stalled_share(100.0) == 0.0
    for i in range(MIN_RECENT_STALLS - 1):
        watch.record(101.0 + i * 0.1, 50)  # late ticks under the stall threshold are not stalls
    assert watch.stalled_share(102.0) == 0.0
    for i in range(MIN_RECENT_STALLS - 1):
        watch.record(102.0 + i * 0.5, 200)
    assert watch.stalled_share(107.0) == pytest.approx((5_000 + 9 * 200) / 10_000)
    assert watch.stalled_share(111.0) == 0.0  # the long pause left the window: nine stalls are too few
    watch.record(111.0, 100)  # a tenth stall (at the threshold) in the window
    assert watch.stalled_share(111.0) == pytest.approx((9 * 200 + 100) / 10_000)


async def test_overloaded_needs_a_running_watch_and_the_setting(settings, monkeypatch):
    from tutor import loopwatch

    watch = LoopWatch(stall_ms=100)
    now = asyncio.get_running_loop().time()
    for i in range(loopwatch.MIN_RECENT_STALLS):
        watch.record(now - i * 0.5, 300)  # 3 s of the last 10: 30 %
    settings.PARLA_SHED_STALLED_PERCENT = 25
    monkeypatch.setattr(loopwatch, "current", None)
    assert loopwatch.overloaded() is None  # outside Daphne nothing watches, nothing is refused
    monkeypatch.setattr(loopwatch, "current", watch)
    assert loopwatch.overloaded() == pytest.approx(0.3)
    settings.PARLA_SHED_STALLED_PERCENT = 31
    assert loopwatch.overloaded() is None
    settings.PARLA_SHED_STALLED_PERCENT = 0
    assert loopwatch.overloaded() is None


async def test_the_running_watch_is_the_current_one_until_it_stops():
    from tutor import loopwatch

    watch = LoopWatch(stall_ms=100)
    watch.start()
    try:
        assert loopwatch.current is watch
    finally:
        await watch.stop()
    assert loopwatch.current is None
