"""How many tutor sessions this server process runs, against PARLA_MAX_SESSIONS_PER_PROCESS.

Past its capacity a process that takes one more session slows every learner it serves (the relay's
event loop is shared; docs/benchmarks.md); a refused learner is told at once and can try again, or be
served by another process. A slot is taken when a session starts and given back when it has closed.
"""

from __future__ import annotations


class SessionSlots:
    """The sessions of one process. Single-threaded (the event loop): no lock needed."""

    def __init__(self) -> None:
        self.taken = 0

    def take(self, maximum: int) -> bool:
        """Take a slot if fewer than `maximum` are taken; False (nothing taken) otherwise."""
        if self.taken >= maximum:
            return False
        self.taken += 1
        return True

    def give_back(self) -> None:
        self.taken = max(0, self.taken - 1)


sessions = SessionSlots()  # this process's
