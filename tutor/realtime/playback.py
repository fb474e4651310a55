"""Playback: what the learner hears, from what the server sent to the page and what the page reported.

The upstream generates audio faster than real time ("The server will produce audio faster than
realtime", openai-python `ConversationItemTruncateEvent`), so `response.output_audio.done` says nothing
about what the learner has heard. The page does: it reports `playback.report` with `kind` `start`,
`progress` (every ~500 ms) and `end` for each assistant item, and answers a flush with how much of the
item it played. This is the server's picture of one learner's playback, built from those reports.

A pure, synchronous state machine like the ResponseTracker: no I/O, and the clock is passed in
(`now`, seconds on any monotonic clock). Items play one after the other, in the order their audio was
sent. An item is *audible* from its first frame sent until the page reports its end, the page is
flushed, or - for a page that stops reporting - its *bound* passes: the moment the item would have
ended, played in real time from the last thing known about it, plus `margin`.
"""

from __future__ import annotations

from dataclasses import dataclass

REPORT_KINDS = ("start", "progress", "end")  # `playback.report` kinds (wire.py validates them)
DEFAULT_MARGIN = 2.0  # seconds past an item's expected end before it is taken as over without a report

REPORTED = "reported"  # the page reported the end (or a later item started playing)
FLUSHED = "flushed"  # the page was told to drop what it had not played
ASSUMED = "assumed"  # the bound passed without a report


@dataclass
class PlayedItem:
    """One assistant item sent to the page to be played."""

    item_id: str
    role: str
    first_sent_at: float
    sent_ms: float = 0.0
    complete: bool = False  # all of its audio was sent (`audio.end`)
    started: bool = False  # the page reported that it started playing it
    played_ms: int = 0  # the page's last word on how much of it was played
    reported_at: float | None = None
    end: str | None = None  # REPORTED | FLUSHED once over by the page's word

    @property
    def over(self) -> bool:
        return self.end is not None

    def within(self, played_ms: int) -> int:
        """A reported position, never past what was sent: a page cannot have played more than that."""
        return min(played_ms, round(self.sent_ms))


class Playback:
    """One learner's playback: fed with `sent`, `complete`, `report`, `flushed`; asked `audible`."""

    def __init__(self, margin: float = DEFAULT_MARGIN) -> None:
        self.margin = margin
        self.items: dict[str, PlayedItem] = {}  # in the order their audio was first sent

    # --- feeding ----------------------------------------------------------------------------------

    def sent(self, item_id: str, role: str, ms: float, now: float) -> None:
        """`ms` of the item's audio was sent to the page."""
        item = self.items.get(item_id)
        if item is None:
            item = self.items[item_id] = PlayedItem(item_id, role, now)
        item.sent_ms += ms

    def complete(self, item_id: str) -> None:
        """No more audio of the item will be sent (`audio.end`)."""
        item = self.items.get(item_id)
        if item is not None:
            item.complete = True

    def report(self, item_id: str, kind: str, played_ms: int, now: float) -> bool:
        """A `playback.report` from the page; False (and nothing changes) for an item never sent."""
        item = self.items.get(item_id)
        if item is None or kind not in REPORT_KINDS:
            return False
        item.started = True
        item.played_ms = max(item.played_ms, item.within(played_ms))
        item.reported_at = now
        if kind == "end" and item.end is None:
            item.end = REPORTED
        # The page plays items in order: one playing means those before it are over.
        for earlier in self.items.values():
            if earlier is item:
                break
            if earlier.end is None:
                earlier.end = REPORTED
        return True

    def flushed(self) -> None:
        """The page was told to drop all queued audio: nothing sent so far will be heard any more."""
        for item in self.items.values():
            if item.end is None:
                item.end = FLUSHED

    def flush_answered(self, item_id: str | None, played_ms: int) -> None:
        """The page's answer to a flush: how much of the item it was playing it had played."""
        item = self.items.get(item_id) if item_id else None
        if item is not None:
            item.played_ms = max(item.played_ms, item.within(played_ms))

    # --- questions ------------------------------------------------------------------------------------

    def heard_ms(self, item_id: str, now: float) -> int:
        """How much of the item the learner has heard by `now` by the page's reports alone: its last
        report played on in real time, never past what was sent; 0 before the page started it."""
        item = self.items.get(item_id)
        if item is None or not item.started or item.reported_at is None:
            return 0
        return int(min(item.sent_ms, item.played_ms + (now - item.reported_at) * 1000))

    def audible(self, now: float) -> PlayedItem | None:
        """The item the learner hears now (or is about to: sent, not yet started), or None."""
        for item, bound in self._bounds():
            if now < bound:
                return item
        return None

    def deadline(self, now: float) -> float | None:
        """The next moment `audible` changes without any report (a bound passing), or None."""
        bounds = [bound for _item, bound in self._bounds() if bound > now]
        return min(bounds) if bounds else None

    def outcome(self, item_id: str, now: float) -> str | None:
        """How the item ended for the learner (REPORTED, FLUSHED, ASSUMED), or None while audible."""
        item = self.items.get(item_id)
        if item is None:
            return None
        if item.end is not None:
            return item.end
        bound = dict((i.item_id, b) for i, b in self._bounds())[item_id]
        return ASSUMED if now >= bound else None

    def length_ms(self, item_ids: list[str]) -> int:
        return round(sum(self.items[i].sent_ms for i in item_ids if i in self.items))

    def _bounds(self) -> list[tuple[PlayedItem, float]]:
        """(item, bound) of every item not over, in play order.

        An item expected to end at: its last report's time plus what was sent after the reported
        position, played in real time; before any report, from when the page can start it (its first
        frame sent, or the expected end of the item before it). Its bound is that plus `margin`.
        """
        bounds = []
        free_at = float("-inf")  # when the page's play head is expected to be free
        for item in self.items.values():
            if item.over:
                continue
            if item.reported_at is not None:
                anchor, position = item.reported_at, item.played_ms
            else:
                anchor, position = max(item.first_sent_at, free_at), 0
            expected_end = anchor + max(0.0, item.sent_ms - position) / 1000
            free_at = expected_end
            bounds.append((item, expected_end + self.margin))
        return bounds
