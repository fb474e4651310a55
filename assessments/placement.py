"""Placement: finding the learner's floor and ceiling from the tutor's probes (pure, no Django, no I/O).

The method follows oral proficiency interviews (DESIGN section 5). The tutor probes at the current
level and reports every probe through `record_probe(level, outcome, evidence)`:

- 2 sustained probes at the current level: the level is sustained, the tutor steps up.
  Sustaining C2 ends placement at the top.
- 2 breakdowns at the current level: the ceiling is reached there. The rating is the floor, the
  highest sustained level.
- A time cap, the learner leaving or an upstream failure ends placement early with what is known
  (`partial`).

Decisions on edge cases:

- A probe reported at a level other than the current one (typically the model answering once more
  at the old level while its instructions are being updated) is recorded at its own level, for the
  grader and the teacher, but does not move the ladder: only probes elicited by the current level's
  tasks count. The update says `off_level=True` so the session can log it.
- If placement starts above A1 and breaks down before anything was sustained, it steps *down* to the
  untested level below to find a floor (as an interviewer would); it then ends as soon as the floor
  is found, because the ceiling is already known. From A1 nothing is below: placement ends with no
  floor, and the rating is A1 with `below_floor=True` ("not yet sustaining A1").
- Invalid levels or outcomes raise `ValueError` with a message fit to return to the model;
  probes after placement finished raise `PlacementFinished` (a `ValueError` too).
- `finish_early` after placement finished is a no-op: the session may call it on every teardown.
"""

from __future__ import annotations

from dataclasses import dataclass

from assessments.cefr import LEVELS, level_index, next_level

SUSTAINED = "sustained"
BREAKDOWN = "breakdown"
OUTCOMES = (SUSTAINED, BREAKDOWN)

PROBES_TO_SUSTAIN = 2
BREAKDOWNS_FOR_CEILING = 2

# How placement ended. The natural ends come from the rules; the early ones from the session.
# Together they are assessments.models.TutorSession.EndReason (a test keeps the two in step).
NATURAL_END_REASONS = ("ceiling", "top")
EARLY_END_REASONS = (
    "time_cap", "learner_left", "learner_stopped", "upstream_error", "upstream_expired", "server_error", "server_restart"
)


class PlacementFinished(ValueError):
    """A probe arrived after placement had ended."""


@dataclass(frozen=True)
class ProbeRecord:
    """One `record_probe` call, as the tutor reported it."""

    level: str
    outcome: str
    evidence: str = ""
    off_level: bool = False  # reported at a level other than the current one: did not move the ladder


@dataclass(frozen=True)
class PlacementUpdate:
    """What one call changed, for the session to act on (new instructions, handover)."""

    level_changed: bool
    current_level: str
    finished: bool
    end_reason: str | None
    off_level: bool = False


class Placement:
    """The floor/ceiling ladder of one tutor session."""

    def __init__(self, start_level: str = "A1"):
        level_index(start_level)  # ValueError for an unknown level
        self._current = start_level
        self._status = {level: None for level in LEVELS}  # None (untested) | SUSTAINED | BREAKDOWN
        self._counts = {level: {SUSTAINED: 0, BREAKDOWN: 0} for level in LEVELS}  # on-level probes only
        self._probes: list[ProbeRecord] = []
        self._end_reason: str | None = None

    # -- state ---------------------------------------------------------------------------------

    @property
    def current_level(self) -> str:
        return self._current

    @property
    def finished(self) -> bool:
        return self._end_reason is not None

    @property
    def end_reason(self) -> str | None:
        return self._end_reason

    @property
    def partial(self) -> bool:
        """True when placement ended before the ceiling or the top was found."""
        return self._end_reason in EARLY_END_REASONS

    @property
    def floor(self) -> str | None:
        """The highest sustained level, or None."""
        sustained = [level for level in LEVELS if self._status[level] == SUSTAINED]
        return sustained[-1] if sustained else None

    @property
    def ceiling(self) -> str | None:
        """The lowest level where the learner broke down twice, or None."""
        broken = [level for level in LEVELS if self._status[level] == BREAKDOWN]
        return broken[0] if broken else None

    @property
    def rating(self) -> str:
        """The placement result: the floor, or A1 when nothing was sustained (see `below_floor`)."""
        return self.floor or LEVELS[0]

    @property
    def below_floor(self) -> bool:
        """Nothing sustained yet: the rating A1 means "working towards A1"."""
        return self.floor is None

    @property
    def probes(self) -> tuple[ProbeRecord, ...]:
        return tuple(self._probes)

    def ladder(self) -> dict[str, str]:
        """Each level's state for the browser: sustained | breakdown | current | untested."""
        return {
            level: self._status[level] or ("current" if level == self._current else "untested")
            for level in LEVELS
        }

    # -- events --------------------------------------------------------------------------------

    def record(self, level: str, outcome: str, evidence: str = "") -> PlacementUpdate:
        """Apply one probe of the tutor; ValueError if invalid or placement has finished."""
        if level not in LEVELS:
            raise ValueError(f"invalid level {level!r}: expected one of {', '.join(LEVELS)}")
        if outcome not in OUTCOMES:
            raise ValueError(f"invalid outcome {outcome!r}: expected 'sustained' or 'breakdown'")
        if evidence is None:
            evidence = ""
        if not isinstance(evidence, str):
            raise ValueError("invalid evidence: expected a string")
        if self.finished:
            raise PlacementFinished(f"placement already finished ({self._end_reason}); probe not recorded")

        off_level = level != self._current
        self._probes.append(ProbeRecord(level, outcome, evidence.strip(), off_level))
        if off_level:
            return self._update(level_changed=False, off_level=True)

        counts = self._counts[level]
        counts[outcome] += 1
        before = self._current
        if counts[SUSTAINED] >= PROBES_TO_SUSTAIN:
            self._status[level] = SUSTAINED
            above = next_level(level)
            if above is None:
                self._end_reason = "top"
            elif self._status[above] == BREAKDOWN:  # came down to find the floor: found it
                self._end_reason = "ceiling"
            else:
                self._current = above
        elif counts[BREAKDOWN] >= BREAKDOWNS_FOR_CEILING:
            self._status[level] = BREAKDOWN
            i = level_index(level)
            if i > 0 and self._status[LEVELS[i - 1]] is None:  # started above: look for a floor
                self._current = LEVELS[i - 1]
            else:
                self._end_reason = "ceiling"
        return self._update(level_changed=self._current != before)

    def finish_early(self, reason: str) -> PlacementUpdate:
        """End placement with what is known (time cap, learner left...); no-op once finished."""
        if reason not in EARLY_END_REASONS:
            raise ValueError(f"invalid early end reason {reason!r}: expected one of {', '.join(EARLY_END_REASONS)}")
        if not self.finished:
            self._end_reason = reason
        return self._update(level_changed=False)

    def _update(self, *, level_changed: bool, off_level: bool = False) -> PlacementUpdate:
        return PlacementUpdate(level_changed, self._current, self.finished, self._end_reason, off_level)

    def __repr__(self):
        return f"<Placement current={self._current} floor={self.floor} ceiling={self.ceiling} end={self._end_reason}>"
