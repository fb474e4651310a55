"""This process's metrics, in the Prometheus text format (prometheus-client), on a port of their own.

Every metric is per process: with several server processes each one is scraped on its own (its
PARLA_METRICS_PORT), and Prometheus adds them up (`sum by (reason) (...)`). Not the library's
multiprocess mode: that is for pre-forked workers sharing a directory, and Parla's processes are
separate containers. The port is not the public one: the proxy never routes to it (README,
"Production").

The code that already logs an event calls one function here (a "hook"), so the instrumentation lives
in this module and the runtime reads as before. Counters and histograms of prometheus-client are
thread-safe: the loop updates them, the metrics server's thread reads them.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

logger = logging.getLogger(__name__)

# Handover timings, seconds: a round trip to the upstream is tens of ms, grading with a model 5-10 s.
HANDOVER_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, float("inf"))
GRADING_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, float("inf"))

SESSIONS_RUNNING = Gauge("parla_sessions_running", "Tutor sessions this process runs now (its capacity slots taken).")
LEARNER_SOCKETS = Gauge("parla_learner_sockets", "Learners' sockets open on this process, in a session or not.")
SESSIONS_ENDED = Counter("parla_sessions_ended", "Tutor sessions ended, by end reason.", ["reason"])
REFUSALS = Counter(
    "parla_sessions_refused", "New sessions refused, by cause (capacity, stalls, draining).", ["cause"]
)
DEAD_AIR = Histogram(
    "parla_handover_dead_air_seconds",
    "Dead air of a handover: from the grade being ready to the first audio of the spoken feedback.",
    buckets=HANDOVER_BUCKETS,
)
FIRST_SUMMARY_AUDIO = Histogram(
    "parla_handover_first_summary_audio_seconds",
    "From the ceiling (the handover began) to the first audio of the summary (the level).",
    buckets=HANDOVER_BUCKETS,
)
GRADING = Histogram("parla_grading_seconds", "Time the grader took for one assessment.", buckets=GRADING_BUCKETS)
UPSTREAM_ERRORS = Counter("parla_upstream_errors", "`error` events from the upstream, by error code.", ["code"])
FAILED_RESPONSES = Counter(
    "parla_upstream_failed_responses", "Responses that ended `failed`, by status_details.error.code.", ["code"]
)
LOOP_STALLS = Counter("parla_event_loop_stalls", "Event loop ticks at least PARLA_LOOP_STALL_MS late.")
SEND_QUEUE_CLOSES = Counter(
    "parla_send_queue_closes", "Learner sockets closed with 4008: the browser read nothing for too long."
)
ASSESSMENTS = Counter("parla_assessments", "Assessments that reached a status in this process, by status.", ["status"])
RECONNECTIONS = Counter(
    "parla_session_reconnections",
    "Placements that outlived their connection: detached here (the socket dropped, or the drain), resumed here.",
    ["event"],
)
DRAINING = Gauge("parla_draining", "1 while this process drains (SIGTERM received), 0 otherwise.")


def _capacity_taken() -> int:
    from tutor.runtime import capacity  # at call time: the metrics import nothing of the runtime

    return capacity.sessions.taken


def _learner_sockets() -> int:
    from tutor import drain  # at call time: the drain counts the sockets, and imports this module

    return len(drain.current.learners)


SESSIONS_RUNNING.set_function(_capacity_taken)
LEARNER_SOCKETS.set_function(_learner_sockets)


# --- hooks (one call at the point that logs the event) ----------------------------------------------


def session_ended(reason: str) -> None:
    SESSIONS_ENDED.labels(reason=reason or "unknown").inc()


def reconnection(event: str) -> None:
    RECONNECTIONS.labels(event=event).inc()


def refused(cause: str) -> None:
    REFUSALS.labels(cause=cause).inc()


def handover_finished(timings: dict[str, float]) -> None:
    """A DeliveryOutcome's timings (loop.time() of ceiling, first_audio, grade_ready, feedback_audio)."""
    if "first_audio" in timings and "ceiling" in timings:
        FIRST_SUMMARY_AUDIO.observe(max(0.0, timings["first_audio"] - timings["ceiling"]))
    if "feedback_audio" in timings and "grade_ready" in timings:
        DEAD_AIR.observe(max(0.0, timings["feedback_audio"] - timings["grade_ready"]))


def upstream_event(event: Any) -> None:
    """Every server event the realtime client reads: errors and failed responses are counted."""
    if event.type == "error":
        UPSTREAM_ERRORS.labels(code=getattr(event.error, "code", None) or "none").inc()
    elif event.type == "response.done" and event.response.status == "failed":
        details = event.response.status_details
        error = details.error if details is not None else None
        FAILED_RESPONSES.labels(code=(error.code if error is not None else None) or "none").inc()


def loop_stalled() -> None:
    LOOP_STALLS.inc()


def send_queue_closed() -> None:
    SEND_QUEUE_CLOSES.inc()


def assessment(status: str) -> None:
    ASSESSMENTS.labels(status=status).inc()


# --- the metrics port ------------------------------------------------------------------------------


class MetricsServer:
    """prometheus-client's HTTP server on PARLA_METRICS_ADDRESS:PARLA_METRICS_PORT while this Daphne
    process serves (tutor/serving.py); none with the port at 0. It serves from its own thread, so a
    scrape never waits for the event loop, and a stalled loop can still be observed."""

    def __init__(self, port: int | None = None, address: str | None = None):
        from django.conf import settings

        self.port = settings.PARLA_METRICS_PORT if port is None else port
        self.address = settings.PARLA_METRICS_ADDRESS if address is None else address
        self.server = None

    def start(self) -> None:
        if not self.port:
            return
        self.server, _thread = start_http_server(self.port, addr=self.address)
        logger.info("metrics served", extra={"address": self.address, "port": self.port})

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            server.shutdown()  # returns once its serving thread has left serve_forever
            server.server_close()
