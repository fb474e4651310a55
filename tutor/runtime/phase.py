"""SessionPhase: where one learner's session is in its life, held in one value the parts consult.

    CONNECTING   the session row and the tutor's upstream session are being set up; nothing said yet
    CONVERSING   the placement: the tutor asks, the learner answers, each answer is judged
    ASSESSING    the placement is over and its assessment row exists; the delivery worker begins the
                 handover (learner audio still reaches the tutor until the handover freezes it)
    DELIVERING   the handover froze the tutor: the summary is spoken while the grader works
    ENDED        the session row is ended; the learner's socket may still be open (the result shows)
    CLOSED       the learner's socket is gone: everything is cancelled and kept (set by `close`)

The server's counterpart of the page's `PHASE` (static/tutor/session.js). What each phase allows is a
property of the phase, so a part asks `phase.now.takes_audio` rather than re-deriving it from which
rows exist. The wire `State` (listening, tutor_speaking...) is what the learner is shown; the phase is
what the server may do. Pure: no I/O.
"""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    CONNECTING = "connecting"
    CONVERSING = "conversing"
    ASSESSING = "assessing"
    DELIVERING = "delivering"
    ENDED = "ended"
    CLOSED = "closed"

    @property
    def placing(self) -> bool:
        """The placement is open: answers are collected and judged, the tutor may speak and be resumed."""
        return self in (Phase.CONNECTING, Phase.CONVERSING)

    @property
    def takes_audio(self) -> bool:
        """Learner audio is recorded and forwarded to the tutor."""
        return self in (Phase.CONVERSING, Phase.ASSESSING)

    @property
    def over(self) -> bool:
        """The session has ended (or its socket closed): nothing more is started."""
        return self in (Phase.ENDED, Phase.CLOSED)


ORDER = list(Phase)  # a session only moves forward through its phases, skipping any


class SessionPhase:
    """The one mutable holder of a session's phase, shared by the runtime and its parts."""

    def __init__(self) -> None:
        self.now = Phase.CONNECTING

    def to(self, phase: Phase) -> Phase:
        """Move forward to `phase` (staying in it is a no-op; going back is a bug, raised at once);
        returns the phase left."""
        left = self.now
        if phase is not left:
            if ORDER.index(phase) < ORDER.index(left):
                raise RuntimeError(f"session phase cannot go from {left.value} to {phase.value}")
            self.now = phase
        return left

    def __repr__(self) -> str:
        return f"<SessionPhase {self.now.value}>"
