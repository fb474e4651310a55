"""TutorConnection: the tutor's upstream, one object for the whole session whatever is underneath.

An upstream session ends on its own (the API's 60-minute limit closes it with 1001 "going away", or the
network drops it). This part owns what that takes, as LiveKit's realtime model owns its reconnect:

    connect   open a new upstream session and configure it (`session.updated` confirms the config); a
              refused transcription or turn detection steps down (`shape`, kept for every later update)
    watch     wait for the current session to close; while the placement is open, resume after an
              expiry (up to MAX_RESUMES), else tell the runtime the upstream is lost
    resume    close the old session, open a new one, replay the conversation as text (audio items
              cannot be re-created; DESIGN section 2), then send the learner audio held meanwhile
    audio     learner audio goes to the current session when it is ready, else is held (bounded)

The parts that talk to the tutor (the response scheduler, the retries, the probes, the handover) hold
this object, never a client: its request methods go to the session of the moment (`current`), so none
of them needs to know that the socket underneath changed. `lock` is held while a request that must not
interleave is in flight, and for a whole resume, so nothing is sent to a new session before it is
configured and replayed.

A placement resumed on a new connection or process (tutor.runtime.resumption) starts with `replay`:
it takes the conversation from the transcript alone, rebuilt from the stored turns.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from assessments.transcript import LEARNER, Transcript
from tutor.realtime.client import RealtimeClient, RealtimeClosed, RealtimeError
from tutor.realtime.fallback import SessionShape
from tutor.realtime.logs import BoundLogger
from tutor.runtime.phase import SessionPhase
from tutor.runtime.responses import assistant_text_item, user_text_item
from tutor.upstream import Upstream

EXPIRED_CLOSE_CODE = 1001  # the API closes an expired session with 1001 "going away"
MAX_RESUMES = 3  # 60-minute sessions: three resumes is far beyond any placement's time cap
HELD_AUDIO_FRAMES = 300  # learner audio held while the upstream resumes (30 s of the page's 100 ms frames)


class TutorConnection:
    """The tutor's upstream session of the moment, and its replacement when it ends."""

    def __init__(
        self,
        *,
        phase: SessionPhase,
        transcript: Transcript,
        log: BoundLogger,
        step_timeout: float,
        upstream: Upstream | None = None,
        handler: Callable[[Any], Awaitable[None]] | None = None,
        configuration: Callable[[], dict] | None = None,
        on_opened: Callable[[Any], Awaitable[None]] | None = None,
        client: RealtimeClient | None = None,
    ):
        self.phase = phase
        self.transcript = transcript
        self.log = log
        self.step_timeout = step_timeout
        self.upstream = upstream  # resolved by the runtime before `connect`
        self.handler = handler  # every event of every session it opens
        self.configuration = configuration  # the tutor's session config now (its level changes)
        self.on_opened = on_opened  # told of each session opened (`session.created`), e.g. to store its id
        self.current = client  # the session of the moment (None before the first connect)
        self.ready = client is not None  # configured and, after a resume, replayed
        self.resumes = 0
        self.shape = SessionShape()  # what the API refused of the configuration stepped down: kept across resumes
        self.lock = asyncio.Lock()
        self._held: deque[bytes] = deque(maxlen=HELD_AUDIO_FRAMES)

    # --- the current session's requests (what the parts use) ---------------------------------------

    @property
    def name(self) -> str:
        return self.current.name

    @property
    def tracker(self):
        return self.current.tracker

    def voice(self) -> str | None:
        """The voice the current session speaks in (the tutor's relay labels its audio with it)."""
        return self.current.tracker.voice

    @property
    def is_open(self) -> bool:
        return self.current is not None and self.current.is_open

    async def send(self, event: dict, **kwargs) -> str:
        return await self.current.send(event, **kwargs)

    async def request(self, event: dict, expect, timeout: float, tolerate: frozenset[str] = frozenset()) -> Any:
        return await self.current.request(event, expect, timeout, tolerate)

    async def wait_for(self, expect, timeout: float) -> Any:
        return await self.current.wait_for(expect, timeout)

    def expect(self, expect, event_id: str | None = None) -> asyncio.Future:
        return self.current.expect(expect, event_id)

    async def wait(self, future: asyncio.Future, timeout: float) -> Any:
        return await self.current.wait(future, timeout)

    async def cancel_response(self, response_id: str, timeout: float) -> str:
        return await self.current.cancel_response(response_id, timeout)

    async def truncate_played(self, item_id: str | None, played_ms: int, timeout: float) -> bool:
        return await self.current.truncate_played(item_id, played_ms, timeout)

    async def delete_item(self, item_id: str, timeout: float) -> None:
        await self.current.delete_item(item_id, timeout)

    async def ping(self, timeout: float) -> float:
        return await self.current.ping(timeout)

    # --- its life ------------------------------------------------------------------------------------

    async def start(self, replay: bool = False) -> None:
        """The first upstream session of this connection, open and configured (and, for a placement
        resumed on a new connection, given the stored conversation: `replay`): learner audio may go to it."""
        await self.connect()
        if replay:
            await self.replay()
        self.ready = True

    async def connect(self) -> None:
        """Open and configure a new upstream session; it is current from its first event on."""
        self.current = self.upstream.client("tutor", handler=self.handler)
        # What the API refuses of the transcription or turn detection steps down (tutor.realtime.fallback).
        created = await self.shape.open(self.current, self.configuration(), self.step_timeout)
        if self.on_opened is not None:
            await self.on_opened(created)

    async def close(self) -> None:
        self.ready = False
        if self.current is not None:
            await self.current.close()

    async def learner_audio(self, pcm: bytes) -> None:
        """To the current session when it is ready; held while it is being resumed, and sent to the new
        one: a learner who answers just as the old session expires is still heard (bounded; dropped if
        none comes)."""
        if self.ready and self.current.is_open:
            try:
                await self.current.send_audio(pcm)
                return
            except RealtimeClosed:
                pass  # the upstream is closing: `watch` resumes it (or the session ends)
        self._held.append(pcm)

    async def watch(
        self, *, on_resumed: Callable[[], Awaitable[None]], on_lost: Callable[[bool, bool], Awaitable[None]]
    ) -> None:
        """Until the session ends: resume an expired upstream session while the placement is open, or
        report it lost (`on_lost(expired, silent)`). An upstream that stopped answering (the client's
        keepalive, `went_silent`) is resumed as an expired one: a new session may answer. Once the assessment began the handover has its own
        timeouts and falls back to text."""
        while True:
            await self.current.closed.wait()
            if self.phase.now.over:
                return
            client = self.current
            expired, silent = client.close_code == EXPIRED_CLOSE_CODE, client.went_silent
            self.log.warning("upstream session ended", extra={"code": client.close_code, "reason": client.close_reason})
            if not self.phase.now.placing:
                return
            if (expired or silent) and self.resumes < MAX_RESUMES and await self.resume(on_resumed):
                continue
            await on_lost(expired, silent)
            return

    async def resume(self, on_resumed: Callable[[], Awaitable[None]]) -> bool:
        """A new upstream session after the old one expired (or went silent), with the conversation replayed.

        Nothing else is sent meanwhile: `lock` is held and learner audio is held until `ready`, so the
        new session is configured before it can say anything. False (the old session stays current,
        closed) when the new one cannot be opened.
        """
        old = self.current
        await old.close()  # its reader has ended; this awaits it
        async with self.lock:
            self.ready = False
            try:
                await self.connect()
                await self.replay()
            except (RealtimeError, TimeoutError, OSError) as exc:
                self.log.warning("upstream resume failed", extra={"error": str(exc)})
                await self.current.close()
                self.current = old
                return False
            self.ready = True
            self.resumes += 1
            try:
                while self._held:  # what the learner said meanwhile, before anything else is said
                    await self.current.send_audio(self._held.popleft())
            except RealtimeClosed:
                pass  # the new session closed at once: the watch sees it next
            self.log.info(
                "upstream session resumed", extra={"turns": len(self.transcript.conversation), "resumes": self.resumes}
            )
            await on_resumed()
        return True

    async def replay(self) -> None:
        """The conversation so far, as text items (a spoken answer whose words are not known has no
        text to replay)."""
        for utterance in self.transcript.conversation:
            if utterance.text:
                item = user_text_item if utterance.role == LEARNER else assistant_text_item
                await self.current.send({"type": "conversation.item.create", "item": item(utterance.text)})
