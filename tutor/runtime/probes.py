"""ProbeHandler: the tutor's `record_probe` tool calls, a second opinion beside the rater's.

Placement follows the independent rater (tutor.runtime.session rates every answer once). The tutor's
call about an answer is kept beside the rater's judgement, for teachers; a skipped call changes
nothing, and a repeated one is noted in the log and otherwise ignored. Either way the tutor gets its
function output.

A call is also a sign that the tutor takes the answer as finished: the answer is judged then
(`on_answer`), so a level change reaches the tutor's instructions before it speaks again. Without a
call the answer is judged when the tutor's next turn has been spoken (one question later).

Each call_id is handled once (a duplicated event is ignored) and gets its function output once;
whether the tutor must be asked to go on after the output is the response scheduler's decision.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from assessments.cefr import LEVELS
from assessments.placement import OUTCOMES
from tutor.realtime.client import RealtimeClient
from tutor.realtime.logs import BoundLogger
from tutor.runtime.answers import AnswerCollector, TutorOpinion
from tutor.runtime.responses import ResponseScheduler

PROBE_TOOL = "record_probe"


class ProbeHandler:
    def __init__(
        self,
        *,
        answers: AnswerCollector,
        responses: ResponseScheduler,
        log: BoundLogger,
        on_answer: Callable[[], Awaitable[None]] | None = None,
    ):
        self.answers = answers
        self.responses = responses
        self._handled: set[str] = set()  # call_ids handled (each is answered once)
        self.log = log
        self.on_answer = on_answer  # judge the answer the call was about

    async def handle(self, origin: RealtimeClient, call_id: str, name: str, arguments: str) -> None:
        """Answer the call `origin` (the upstream session that made it) made."""
        if call_id in self._handled:
            self.log.warning("call seen twice", extra={"call_id": call_id})  # a duplicated event
            return
        self._handled.add(call_id)
        try:
            if name != PROBE_TOOL:
                raise ValueError(f"unknown tool {name!r}")
            args = json.loads(arguments)
            opinion = TutorOpinion(args["level"], args["outcome"], str(args.get("evidence") or ""), call_id)
            if opinion.level not in LEVELS or opinion.outcome not in OUTCOMES:
                raise ValueError(f"invalid level or outcome: {opinion.level!r}, {opinion.outcome!r}")
        except (ValueError, KeyError, TypeError) as exc:
            self.log.warning("probe rejected", extra={"call_id": call_id, "error": str(exc)})
            output = {"ok": False, "error": str(exc)}
        else:
            if self.answers.opinion(opinion):
                self.log.info("tutor opinion noted", extra={"call_id": call_id, "level": opinion.level,
                                                            "outcome": opinion.outcome})
                if self.on_answer is not None:
                    await self.on_answer()
            else:  # a repeated call, or one with no answer to go with: it rates nothing
                self.log.info("tutor probe ignored", extra={"call_id": call_id, "level": opinion.level})
            output = {"ok": True}
        if origin is not self.responses.connection.current or not origin.is_open:
            return  # that session expired; the resumed one goes on from the replayed conversation
        await self.responses.function_output(call_id, output)
