"""ProbeHandler: the tutor's `record_probe` tool calls.

Each call is checked, recorded in the placement and stored; the tutor gets the function output (with
a session update first when the level changed) and is asked to go on, or the assessment begins when
placement has finished.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from assessments.placement import Placement, PlacementFinished, PlacementUpdate, ProbeRecord
from tutor.realtime.client import RealtimeClient
from tutor.realtime.logs import BoundLogger
from tutor.runtime.responses import ResponseScheduler

PROBE_TOOL = "record_probe"


class ProbeHandler:
    def __init__(
        self,
        *,
        placement: Placement,
        responses: ResponseScheduler,
        store: Callable[[ProbeRecord, str], Awaitable[None]],
        on_recorded: Callable[[], Awaitable[None]],
        on_finished: Callable[[], Awaitable[None]],
        level_session: Callable[[], dict],
        step_timeout: float,
        log: BoundLogger,
    ):
        self.placement = placement
        self.responses = responses
        self.store = store  # persist one probe (record, call_id)
        self.on_recorded = on_recorded  # e.g. show the learner the new ladder
        self.on_finished = on_finished  # placement ended: begin the assessment
        self.level_session = level_session  # the session update for the current level
        self.step_timeout = step_timeout
        self.log = log

    async def handle(self, origin: RealtimeClient, call_id: str, name: str, arguments: str) -> None:
        """Answer the call `origin` (the upstream session that made it) made."""
        update: PlacementUpdate | None = None
        try:
            if name != PROBE_TOOL:
                raise ValueError(f"unknown tool {name!r}")
            args = json.loads(arguments)
            update = self.placement.record(args["level"], args["outcome"], args.get("evidence", ""))
        except (ValueError, KeyError, TypeError, PlacementFinished) as exc:
            self.log.warning("probe rejected", extra={"call_id": call_id, "error": str(exc)})
            output = {"ok": False, "error": str(exc)}
        else:
            probe = self.placement.probes[-1]
            await self.store(probe, call_id)
            self.log.info(
                "probe recorded",
                extra={"level": probe.level, "outcome": probe.outcome, "current": update.current_level},
            )
            await self.on_recorded()
            if update.finished:
                await self.on_finished()
                return
            output = {"ok": True, "current_level": update.current_level}
        async with self.responses.lock:
            if origin is not self.responses.client() or not origin.is_open:
                return  # that session expired; the resumed one goes on from the replayed conversation
            if update is not None and update.level_changed:
                await origin.request(
                    {"type": "session.update", "session": self.level_session()},
                    expect="session.updated",
                    timeout=self.step_timeout,
                )
                self.log.info("level changed", extra={"level": update.current_level})
            await self.responses.function_output(call_id, output)
            await self.responses.respond()
