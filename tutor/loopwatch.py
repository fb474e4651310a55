"""How late this process's event loop runs what is due: the server's own measure of its stalls.

One event loop relays the audio of every learner a Daphne process serves, so a pause of the loop is
a pause in every learner's audio at once. Latency seen from outside mixes that with the network and
with whatever else the machine runs; the lag of the loop's own timer is the server's share alone.

`LoopWatch` ticks every TICK_SECONDS and records how late each tick ran (`LagStats`, pure). Once per
REPORT_SECONDS window that had stalls (ticks at least PARLA_LOOP_STALL_MS late) it logs
"event loop stalled" with that window's figures; when the server stops it logs "event loop lag" with
the whole run's (bench/load.py reads that line into its loop-lag column). Beside the lag it times the
garbage collector (`gc.callbacks`), which stops every thread while it runs: a stall with a collection
in it is the collector's, one without is the loop's own work or a thread holding the GIL.

It also keeps the stalls of the last RECENT_SECONDS: while they add up to PARLA_SHED_STALLED_PERCENT of
that time (and are at least MIN_RECENT_STALLS, so that one long pause, such as the first session's
imports, is not taken for overload), `overloaded()` is true and new sessions are refused like sessions
past the configured maximum: a process too slow for the learners it has takes no more of them, on
whatever machine it runs (issue 14: "a refusal, not a slowdown").
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import logging
import time
from collections import deque
from dataclasses import dataclass, field

from tutor import metrics
from tutor.realtime.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

TICK_SECONDS = 0.01  # how often the loop is sampled: 100 timer callbacks a second, a few us each
REPORT_SECONDS = 60.0
RECENT_SECONDS = 10.0  # the window `overloaded()` looks at
MIN_RECENT_STALLS = 10

# Upper edges of the lag histogram's buckets, ms: 0.1 ms and then 10 % wider each, up to 60 s, so a
# quantile read from it is within 10 % of the true lag (and a stall past 60 s is counted in the last).
EDGES_MS: tuple[float, ...] = tuple(0.1 * 1.1**k for k in range(141))


@dataclass
class LagStats:
    """How late a loop's ticks ran: a histogram of lags, their maximum, and the stalls among them."""

    stall_ms: float
    counts: list[int] = field(default_factory=lambda: [0] * (len(EDGES_MS) + 1))
    ticks: int = 0
    max_ms: float = 0.0
    stalls: int = 0
    stalled_ms: float = 0.0  # the stalls' lag added up: time every learner's audio stood still

    def record(self, lag_ms: float) -> None:
        lag_ms = max(0.0, lag_ms)
        self.counts[bisect.bisect_left(EDGES_MS, lag_ms)] += 1
        self.ticks += 1
        self.max_ms = max(self.max_ms, lag_ms)
        if lag_ms >= self.stall_ms:
            self.stalls += 1
            self.stalled_ms += lag_ms

    def quantile(self, q: float) -> float | None:
        """The lag that a fraction `q` of the ticks did not exceed (the upper edge of its bucket, never
        above the largest lag seen); None before the first tick."""
        if not self.ticks:
            return None
        rank = max(1, round(q * self.ticks))
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return min(EDGES_MS[index], self.max_ms) if index < len(EDGES_MS) else self.max_ms
        return self.max_ms  # not reached: the counts add up to `ticks`

    def fields(self) -> dict:
        """For a log line: ticks, p50/p99/max lag and the stalls, in ms."""
        p50, p99 = self.quantile(0.5), self.quantile(0.99)
        return {
            "ticks": self.ticks,
            "p50_ms": None if p50 is None else round(p50, 2),
            "p99_ms": None if p99 is None else round(p99, 2),
            "max_ms": round(self.max_ms, 2),
            "stalls": self.stalls,
            "stalled_ms": round(self.stalled_ms, 1),
            "stall_threshold_ms": self.stall_ms,
        }


@dataclass
class GcStats:
    """The collections of each generation: how many, their time, the longest (ms)."""

    counts: list[int] = field(default_factory=lambda: [0, 0, 0])
    total_ms: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    max_ms: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    _started: float | None = None

    def callback(self, phase: str, info: dict) -> None:
        """For `gc.callbacks`: called at the start and the stop of every collection."""
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            ms = (time.perf_counter() - self._started) * 1000
            generation = info["generation"]
            self.counts[generation] += 1
            self.total_ms[generation] += ms
            self.max_ms[generation] = max(self.max_ms[generation], ms)
            self._started = None

    def fields(self) -> dict:
        return {"gc_counts": list(self.counts), "gc_ms": [round(ms, 1) for ms in self.total_ms],
                "gc_max_ms": [round(ms, 2) for ms in self.max_ms]}


class LoopWatch:
    """Samples the running loop's lag for as long as the server runs: an owned task that `stop`
    cancels and awaits, then logs the run's figures."""

    def __init__(
        self,
        stall_ms: float | None = None,
        tick: float = TICK_SECONDS,
        report_every: float = REPORT_SECONDS,
        recent_seconds: float = RECENT_SECONDS,
    ):
        if stall_ms is None:
            from django.conf import settings

            stall_ms = settings.PARLA_LOOP_STALL_MS
        self.tick = tick
        self.report_every = report_every
        self.recent_seconds = recent_seconds
        self.total = LagStats(stall_ms)
        self.window = LagStats(stall_ms)
        self.gc = GcStats()
        self._recent: deque[tuple[float, float]] = deque()  # (when, lag ms) of the recent stalls
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        global current
        gc.callbacks.append(self.gc.callback)
        self.task = asyncio.get_running_loop().create_task(self._run(), name="loop-watch")
        current = self

    async def stop(self) -> None:
        global current
        if current is self:
            current = None
        await cancel_and_wait(self.task)
        if self.gc.callback in gc.callbacks:
            gc.callbacks.remove(self.gc.callback)
        logger.info("event loop lag", extra={**self.total.fields(), **self.gc.fields()})

    def record(self, now: float, lag_ms: float) -> None:
        """One tick, `lag_ms` late, at loop time `now`."""
        self.total.record(lag_ms)
        self.window.record(lag_ms)
        if lag_ms >= self.total.stall_ms:
            self._recent.append((now, lag_ms))
            metrics.loop_stalled()
        while self._recent and self._recent[0][0] < now - self.recent_seconds:
            self._recent.popleft()

    def stalled_share(self, now: float) -> float:
        """The part of the last `recent_seconds` (up to `now`) the loop spent in stalls (0-1); 0 while
        there were fewer than MIN_RECENT_STALLS of them."""
        recent = [lag for at, lag in self._recent if at >= now - self.recent_seconds]
        if len(recent) < MIN_RECENT_STALLS:
            return 0.0
        return min(1.0, sum(recent) / 1000 / self.recent_seconds)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + self.tick
        report_at = loop.time() + self.report_every
        while True:
            await asyncio.sleep(due - loop.time())  # the sampling period, not a settle wait
            now = loop.time()
            self.record(now, (now - due) * 1000)
            due = now + self.tick
            if now >= report_at:
                if self.window.stalls:
                    logger.warning("event loop stalled", extra=self.window.fields())
                self.window = LagStats(self.window.stall_ms)
                report_at = now + self.report_every


current: LoopWatch | None = None  # this process's, while its Daphne server runs (tutor/serving.py)


def overloaded() -> float | None:
    """The share of the recent time the loop stalled, when it is PARLA_SHED_STALLED_PERCENT or more
    (new sessions are then refused); None otherwise, or with no watch running (outside Daphne), or
    with the setting at 0."""
    from django.conf import settings

    watch = current
    limit = settings.PARLA_SHED_STALLED_PERCENT
    if watch is None or limit <= 0:
        return None
    share = watch.stalled_share(asyncio.get_running_loop().time())
    return share if share * 100 >= limit else None
