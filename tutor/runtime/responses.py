"""ResponseScheduler: the one place that decides when the tutor may speak next.

The tutor speaks (a `response.create`) only when a reply is owed and the turn is free:

- owed: the session has just started (the greeting), the learner wrote an answer, a resumed session's
  last word was the learner's, or the tutor's own record_probe calls have been answered and the
  response that made them said nothing after them (the gpt-realtime-2 generation answers in the same
  response: a preamble, the call, the answer; older models stop after the call);
- free: no response is active or being created, the learner is not speaking (between
  `input_audio_buffer.speech_started` and `input_audio_buffer.committed`), no reply the server itself
  starts for a committed spoken turn is on its way (server VAD with `create_response`), and the
  assessment has not begun.

Whatever mix of tool calls, speech, written answers and interruptions led there, one response at a
time follows: the API refuses a second while one is active (`conversation_already_has_active_response`)
and a response started while the learner speaks talks over them. Session updates that change speed or
voice go out only between responses ("This value can only be changed in between model turns, not while
a response is in progress": `speed` in openai/types/realtime/realtime_audio_config_output.py): a level
change is kept here and sent as soon as no response is active (also while the learner speaks), and
always before the next response.

It also owns the learner's interruptions (a written answer or speech over the tutor: the browser flushes
at once, the item is cut upstream where the learner stopped hearing it) and the conversation items the
session adds. The runtime hands it the tutor's connection (one object across resumes; `current` is the
upstream session of the moment), the session phase (it speaks only while the placement is open), a
spawner for its tasks, and feeds it every upstream event (`observe`) before anything else sees it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from tutor.realtime.client import RealtimeClient, RealtimeRequestError
from tutor.realtime.logs import BoundLogger
from tutor.realtime.relay import LearnerPort, PlaybackPosition, SpeechRelay
from tutor.realtime.tasks import wait_responsive
from tutor.runtime.contact import match_what_was_heard
from tutor.runtime.phase import SessionPhase

if TYPE_CHECKING:  # the connection replays with this module's items: imported for types only
    from tutor.runtime.connection import TutorConnection

ALREADY_ACTIVE = "conversation_already_has_active_response"
SESSION_UPDATE_ATTEMPTS = 3  # a refused level update is tried again at the next free moment, this often


def user_text_item(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def assistant_text_item(text: str) -> dict:
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}


def _get(obj: Any, *path: str) -> Any:
    for name in path:
        obj = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if obj is None:
            return None
    return obj


class ResponseScheduler:
    def __init__(
        self,
        *,
        connection: TutorConnection,
        phase: SessionPhase,
        learner: LearnerPort,
        relay: SpeechRelay,
        step_timeout: float,
        spawn: Callable[[Coroutine, str], asyncio.Task],
        log: BoundLogger,
    ):
        self.connection = connection
        self.phase = phase  # it speaks only while the placement is open (not once the assessment began)
        self.learner = learner
        self.relay = relay
        self.step_timeout = step_timeout
        self.spawn = spawn
        self.log = log
        self.lock = connection.lock  # held while a request that must not interleave is in flight
        self.owed: str | None = None  # why the tutor owes a reply (None: it owes none)
        self.learner_speaking = False
        self.server_reply_due = False  # a committed spoken turn: the server starts the reply itself
        self.reply_complete = False  # a reply after the learner's last answer spoke to its end
        self.pending_session: dict | None = None  # a session update waiting until no response is active
        self._update_attempts = 0
        self._answered_calls: set[str] = set()  # call_ids given a function_call_output
        self._waiting_calls: dict[str, set[str]] = {}  # finished response -> its calls still unanswered
        self._worker: asyncio.Task | None = None

    # --- what the runtime tells it ------------------------------------------------------------------

    def observe(self, event: Any) -> None:
        """Every upstream event of the tutor session, before anyone else sees it (never awaits)."""
        kind = event.type
        if kind == "session.created":
            self.reset()  # a new upstream session (a resume): nothing of the old one's turn-taking carries over
        elif kind == "input_audio_buffer.speech_started":
            self.learner_speaking = True
        elif kind == "input_audio_buffer.committed":
            self.learner_speaking = False
            self._turn_committed()
        elif kind == "input_audio_buffer.cleared":
            self.learner_speaking = False
        elif kind == "response.created" and _get(event, "response", "conversation_id"):
            # Any reply in the conversation answers what came before it (greeting, answers, outputs):
            # calls still waiting for their outputs need no reply of their own after it.
            self.server_reply_due = False
            self._waiting_calls.clear()
            if self.owed:
                self.log.info("reply owed is answered", extra={"reason": self.owed, "response_id": event.response.id})
            self.owed = None
        elif kind == "response.done":
            if event.response.status == "completed" and self.connection.tracker.spoke_after_calls(event.response.id):
                self.reply_complete = True
            self._response_done(event.response)
        self._poke()

    def learner_answered(self) -> None:
        """The learner's answer began or grew: no reply after it has spoken yet."""
        self.reply_complete = False

    def reset(self) -> None:
        """A new upstream session: nothing of the old one's turn-taking carries over."""
        self.learner_speaking = self.server_reply_due = False
        self._waiting_calls.clear()

    @property
    def calls_waiting(self) -> bool:
        """A finished response made calls that still wait for their outputs (a reply follows them)."""
        return bool(self._waiting_calls)

    @property
    def tutor_will_speak(self) -> bool:
        """A reply is owed, being created, or waits for the outputs of the calls its response made:
        the state stays `tutor_speaking` between a tool call and the speech that follows it."""
        return bool(self.owed or self._waiting_calls or self.connection.current.tracker.pending_creates)

    # --- asking for replies -------------------------------------------------------------------------

    def want(self, reason: str) -> None:
        """The tutor owes a reply: it is started as soon as the turn is free."""
        if self.owed is None:
            self.owed = reason
        self._poke()

    async def answer_written(self) -> None:
        """A written answer was added: it cuts the tutor off, like speaking over it does, and is owed
        a reply of its own."""
        async with self.lock:  # a create in flight is confirmed first: then it is active, and cut
            client = self.connection.current
            active = client.tracker.active_response_id
            if client.is_open and (active is not None or self.learner.playback.audible() is not None):
                # Also when its reply was generated to the end but the learner is still hearing it.
                await self.interrupt_playback()
            if active is not None and client.is_open:
                await client.cancel_response(active, self.step_timeout)
        self.want("written answer")

    async def create(self) -> None:
        """Start a reply now if the turn is free (the greeting); otherwise when it is."""
        self.want("asked")
        if self._worker is not None:
            await asyncio.shield(self._worker)

    def update_session(self, session: dict) -> None:
        """Send `session` (speed, instructions...) between responses, before the next one starts; with
        the fallbacks the API's refusals made when the session was opened (tutor.realtime.fallback)."""
        session = self.connection.shape.apply(session)
        self.pending_session = {**(self.pending_session or {}), **session}
        self._update_attempts = 0
        self._poke()

    # --- conversation items -------------------------------------------------------------------------

    async def add_item(self, item: dict) -> None:
        """`conversation.item.create`; the caller holds `lock` (nothing is sent while a resumed session
        is being configured)."""
        await self.connection.current.send({"type": "conversation.item.create", "item": item})

    async def function_output(self, call_id: str, output: dict) -> None:
        """Answer one call, once (a call_id seen twice is answered the first time only)."""
        if call_id in self._answered_calls:
            self.log.warning("call already answered", extra={"call_id": call_id})
            return
        self._answered_calls.add(call_id)
        async with self.lock:
            await self.add_item(
                {"type": "function_call_output", "call_id": call_id, "output": json.dumps(output)}
            )
        for response_id, calls in list(self._waiting_calls.items()):
            calls.discard(call_id)
            if not calls:
                del self._waiting_calls[response_id]
                self.want("tool output")
        self._poke()

    # --- the decision -------------------------------------------------------------------------------

    def between_responses(self) -> bool:
        """No response active or being created: when speed and voice may change."""
        client = self.connection.current
        return client.is_open and client.tracker.active_response_id is None and client.tracker.pending_creates == 0

    def turn_is_free(self) -> bool:
        """Between responses, the learner not speaking and no reply of the server's on its way."""
        return self.between_responses() and not self.learner_speaking and not self.server_reply_due

    @property
    def _busy(self) -> bool:
        return self._worker is not None and not self._worker.done()

    def _poke(self) -> None:
        """Start the worker if there is something to send and the turn is free."""
        if not self.phase.now.placing:
            # The assessment has begun: the handover owns the session now (a level update would
            # turn the detection it froze back on).
            self.pending_session = None
            return
        if self._busy:
            return
        if (self.pending_session is not None and self.between_responses()) or (self.owed and self.turn_is_free()):
            self._worker = self.spawn(self._work(), "respond")

    async def _work(self) -> None:
        try:
            await self._send_what_is_due()
        finally:
            self._worker = None
        self._poke()  # anything owed meanwhile

    async def _send_what_is_due(self) -> None:
        async with self.lock:
            client = self.connection.current
            if self.pending_session is not None and self.between_responses():
                # Also while the learner speaks: a learner who never pauses still gets the new level.
                await self._send_session_update(client)
            if self.owed and self.turn_is_free():
                reason = self.owed
                try:
                    # Confirmed before the lock is released: until `response.created` the tracker knows
                    # of it only as a pending create, and nothing else is sent meanwhile.
                    await client.request(
                        {"type": "response.create"},
                        expect="response.created",
                        timeout=self.step_timeout,
                        tolerate=frozenset({ALREADY_ACTIVE}),
                    )
                except RealtimeRequestError as exc:
                    if exc.code != ALREADY_ACTIVE:
                        raise
                    # The server started one first (its VAD): that response is the reply.
                    self.log.info("response already started by the server", extra={"event_id": exc.event_id})
                else:
                    self.log.info("tutor asked to speak", extra={"reason": reason})

    async def _send_session_update(self, client: RealtimeClient) -> None:
        session, self.pending_session = self.pending_session, None
        try:
            await client.request({"type": "session.update", "session": session}, "session.updated", self.step_timeout)
        except RealtimeRequestError as exc:
            self._update_attempts += 1
            self.log.warning(
                "session update refused", extra={"code": exc.code, "attempt": self._update_attempts}
            )
            if self._update_attempts < SESSION_UPDATE_ATTEMPTS:
                # e.g. a response the server started as it arrived: try again when the turn is free
                self.pending_session = {**session, **(self.pending_session or {})}
            return
        self._update_attempts = 0
        self.log.info("session updated between responses", extra={"fields": sorted(session)})

    def _turn_committed(self) -> None:
        """The learner's spoken turn is in the conversation. With server VAD's `create_response` the
        server starts the reply itself; Parla waits for it (bounded) rather than race it."""
        client = self.connection.current
        detection = _get(client.tracker.session, "audio", "input", "turn_detection")
        creates = detection is not None and _get(detection, "create_response") is not False
        if creates and client.tracker.active_response_id is None and client.tracker.pending_creates == 0:
            self.server_reply_due = True
            self.spawn(self._expect_server_reply(client), "server-reply")
        else:
            self.want("spoken answer")  # nobody else will reply to it

    async def _expect_server_reply(self, client: RealtimeClient) -> None:
        try:
            await client.wait_for("response.created", self.step_timeout)
        except TimeoutError:
            if self.server_reply_due and client is self.connection.current:
                self.log.warning("server started no reply to the learner's turn")
                self.server_reply_due = False
                self.want("spoken answer")

    def _response_done(self, response: Any) -> None:
        """A response ended: do the calls it made still need a reply after their outputs?"""
        if not response.conversation_id:
            return  # out of band
        tracker = self.connection.current.tracker
        calls = tracker.calls_of(response.id)
        if not calls:
            return
        reason = _get(response, "status_details", "reason")
        if response.status == "cancelled" and reason == "turn_detected":
            return  # the learner is speaking: their turn gets the reply, which sees the outputs
        if tracker.spoke_after_calls(response.id):
            return  # it answered in the same response
        unanswered = set(calls) - self._answered_calls
        if unanswered:
            self._waiting_calls[response.id] = unanswered
        else:
            self.want("tool output")

    # --- interruptions ------------------------------------------------------------------------------

    async def interrupt_playback(self) -> None:
        """The learner cut the tutor off: the browser drops what it has not played yet at once, and
        the item is cut upstream where the learner stopped hearing it (so the model knows)."""
        self.relay.silence_current()
        heard = self.learner.playback.heard()  # before the flush ends every item: the fallback below
        flushed = await self.learner.request_flush()
        self.spawn(self._truncate_when_flushed(flushed, heard), "truncate")

    async def _truncate_when_flushed(self, flushed: asyncio.Future, heard: PlaybackPosition | None) -> None:
        """Truncate where the page says it stopped; a page that does not answer the flush within the
        step timeout is cut where its last playback report says the learner was (a warning, not a
        failure the learner sees), and not at all when it never reported playing anything."""
        client = self.connection.current
        try:
            # The loop's own lateness under load is not charged to the page (tasks.wait_responsive);
            # the flush stays open, so the page's late answer is no error for the learner.
            position = await wait_responsive(flushed, self.step_timeout)
        except TimeoutError:
            flushed.cancel()  # a late answer is then known as late (FlushRequests.given_up), not pending
            self.log.warning(
                "flush not answered: truncating at the page's last report",
                extra={"item_id": heard.item_id if heard else None, "audio_end_ms": heard.played_ms if heard else None},
            )
            if heard is None:
                return
            position = heard
        item = client.tracker.item(position.item_id)
        if item is not None and client.tracker.responses[item.response_id].active:
            # truncate once its response has ended (cancelled by VAD or by us)
            await client.wait_for(
                lambda e: e.type == "response.done" and e.response.id == item.response_id, self.step_timeout
            )
        # Cut where the learner stopped hearing it, and delete what they never heard (tutor.runtime.contact).
        await match_what_was_heard(client, position.item_id, position.played_ms, self.step_timeout, self.log)
