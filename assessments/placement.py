"""Placement: finding the learner's floor and ceiling from the tutor's probes (pure, no Django, no I/O).

The method follows oral proficiency interviews (DESIGN section 5). The tutor probes at the current
level; the independent rater (assessments.rating) judges every answer once, and each judgement is
recorded here (`record(level, outcome, evidence)`):

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
  is found, because the ceiling is already known. While stepping down, one breakdown is enough to step
  down again (the warm-up's start was too high: see `starting_level`). From A1 nothing is below: placement ends with no
  floor, and the rating is A1 with `below_floor=True` ("not yet sustaining A1").
- A `not_ratable` answer (silence, off-task, another language) is recorded for the teacher but moves
  nothing: it is neither evidence for nor against the level.
- Invalid levels or outcomes raise `ValueError` with a message fit to return to the model;
  probes after placement finished raise `PlacementFinished` (a `ValueError` too).
- `finish_early` after placement finished is a no-op: the session may call it on every teardown.
- No rating without evidence (`has_evidence`): fewer rated answers than the configured minimum, or a
  session cut short before anything was sustained, give no level at all (`not_rated`), never a
  default one. A session cut short after a level was sustained reports what is known: "at least"
  the floor (`partial`).
"""

from __future__ import annotations

from dataclasses import dataclass

from assessments.cefr import LEVELS, level_index, next_level

SUSTAINED = "sustained"
BREAKDOWN = "breakdown"
NOT_RATABLE = "not_ratable"
OUTCOMES = (SUSTAINED, BREAKDOWN)  # what the tutor's record_probe may report
JUDGEMENTS = (*OUTCOMES, NOT_RATABLE)  # what the rater may judge

PROBES_TO_SUSTAIN = 2
BREAKDOWNS_FOR_CEILING = 2

# How placement ended. The natural ends come from the rules; the early ones from the session.
# Together they are assessments.models.TutorSession.EndReason (a test keeps the two in step).
NATURAL_END_REASONS = ("ceiling", "top")
EARLY_END_REASONS = (
    "time_cap", "learner_left", "learner_stopped", "upstream_error", "upstream_expired", "server_error", "server_restart",
    "server_drain",  # the process drained for a deploy and the placement had not ended (tutor/drain.py)
    # the upstream refused or kept failing (tutor.realtime.failures): key, busy, quota, model access
    "upstream_auth", "upstream_busy", "upstream_quota", "upstream_model",
)


# The warm-up: the start screen asks learners how well they speak; placement starts there (a C2 claim
# starts at C1: two answers would be thin evidence for the top). "Not sure" starts at A1.
HIGHEST_START = "C1"


def starting_level(self_assessment: str | None) -> str:
    """Where placement starts for a learner's self-assessment (None or "" when not sure)."""
    if not self_assessment:
        return LEVELS[0]
    return LEVELS[min(level_index(self_assessment), level_index(HIGHEST_START))]


class PlacementFinished(ValueError):
    """A probe arrived after placement had ended."""


@dataclass(frozen=True)
class ProbeRecord:
    """One judged answer, as the rater reported it."""

    level: str
    outcome: str
    evidence: str = ""
    off_level: bool = False  # reported at a level other than the current one: did not move the ladder
    rater: str = ""


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

    @property
    def rated_answers(self) -> int:
        """Answers judged sustained or breakdown (an answer that could not be rated is no evidence)."""
        return sum(p.outcome in OUTCOMES for p in self._probes)

    def has_evidence(self, minimum: int) -> bool:
        """Whether the finished placement may give a level: at least `minimum` rated answers, and a
        level sustained or the ceiling found (cut short before anything was sustained, nothing is known)."""
        return self.rated_answers >= minimum and (self.floor is not None or self._end_reason in NATURAL_END_REASONS)

    def one_answer_from_end(self) -> bool:
        """Whether the next on-level answer can end placement (either outcome): the moment to get the
        summary voice ready, so that the level is said without delay when placement ends."""
        if self.finished:
            return False
        for outcome in OUTCOMES:
            trial = Placement(self._current)
            trial._status, trial._counts = dict(self._status), {k: dict(v) for k, v in self._counts.items()}
            if trial.record(self._current, outcome).finished:
                return True
        return False

    def ladder(self) -> dict[str, str]:
        """Each level's state for the browser: sustained | breakdown | current | untested."""
        return {
            level: self._status[level] or ("current" if level == self._current else "untested")
            for level in LEVELS
        }

    # -- events --------------------------------------------------------------------------------

    def record(self, level: str, outcome: str, evidence: str = "", rater: str = "") -> PlacementUpdate:
        """Apply one judged answer; ValueError if invalid or placement has finished."""
        if level not in LEVELS:
            raise ValueError(f"invalid level {level!r}: expected one of {', '.join(LEVELS)}")
        if outcome not in JUDGEMENTS:
            raise ValueError(f"invalid outcome {outcome!r}: expected 'sustained' or 'breakdown' (or 'not_ratable')")
        if evidence is None:
            evidence = ""
        if not isinstance(evidence, str):
            raise ValueError("invalid evidence: expected a string")
        if self.finished:
            raise PlacementFinished(f"placement already finished ({self._end_reason}); probe not recorded")

        off_level = level != self._current
        self._probes.append(ProbeRecord(level, outcome, evidence.strip(), off_level, rater))
        if off_level:
            return self._update(level_changed=False, off_level=True)
        if outcome == NOT_RATABLE:
            return self._update(level_changed=False)

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
        elif counts[BREAKDOWN] >= self._breakdowns_to_leave(level):
            self._status[level] = BREAKDOWN
            i = level_index(level)
            if i > 0 and self._status[LEVELS[i - 1]] is None:  # started above: look for a floor
                self._current = LEVELS[i - 1]
            else:
                self._end_reason = "ceiling"
        return self._update(level_changed=self._current != before)

    def _breakdowns_to_leave(self, level: str) -> int:
        """Two breakdowns make a ceiling; while stepping down from a start that was too high (the level
        above already broke down twice and nothing is sustained yet) one is enough to step down again:
        where the learner stops is known, what is looked for is a floor. At A1 it stays two."""
        i = level_index(level)
        above = next_level(level)
        if i > 0 and above is not None and self._status[above] == BREAKDOWN and self.floor is None:
            return 1
        return BREAKDOWNS_FOR_CEILING

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
