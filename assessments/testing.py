"""Test doubles for the assessments (production code never imports this module)."""

from __future__ import annotations

import asyncio

from assessments.grading import Grader, GradeInput, GradeResult, RulesGrader


class TimedGrader(Grader):
    """A deterministic stand-in that takes `seconds` (the time a real model grades), then delegates."""

    def __init__(self, seconds: float, inner: Grader | None = None):
        self.seconds = seconds
        self.inner = inner or RulesGrader()

    async def grade(self, data: GradeInput) -> GradeResult:
        await asyncio.sleep(self.seconds)  # simulated grading work, not a protocol wait
        return await self.inner.grade(data)
