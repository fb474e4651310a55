"""ResponseScheduler: one response at a time on the tutor's upstream session.

It owns the lock every `response.create` goes through (the API refuses a second while one is active:
`conversation_already_has_active_response`), the learner's interruptions (a written answer or speech
over the tutor: the browser flushes at once, the item is cut upstream where the learner stopped
hearing it) and the conversation items the session adds. The runtime hands it the current client (it
changes when an expired session is resumed) and a spawner for its truncate tasks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine

from tutor.realtime.client import RealtimeClient, RealtimeRequestError
from tutor.realtime.logs import BoundLogger
from tutor.realtime.relay import LearnerPort, SpeechRelay

# A response that is not cancelled is given this many step timeouts to finish by itself.
RESPONSE_FINISH_STEPS = 6
ALREADY_ACTIVE = "conversation_already_has_active_response"


def user_text_item(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def assistant_text_item(text: str) -> dict:
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}


class ResponseScheduler:
    def __init__(
        self,
        *,
        client: Callable[[], RealtimeClient],
        learner: LearnerPort,
        relay: SpeechRelay,
        step_timeout: float,
        may_respond: Callable[[], bool],
        spawn: Callable[[Coroutine, str], asyncio.Task],
        log: BoundLogger,
    ):
        self.client = client
        self.learner = learner
        self.relay = relay
        self.step_timeout = step_timeout
        self.may_respond = may_respond  # False once the assessment has begun
        self.spawn = spawn
        self.log = log
        self.lock = asyncio.Lock()

    async def create(self, interrupt: bool = False) -> None:
        """`response.create` once no response is active; `interrupt` cuts an active one off instead."""
        async with self.lock:
            await self.respond(interrupt)

    async def respond(self, interrupt: bool = False) -> None:
        """The body of `create`; the caller holds `lock`."""
        client = self.client()
        if not self.may_respond() or not client.is_open:
            return
        active = client.tracker.active_response_id
        if active is not None:
            if interrupt:  # a written answer cuts the tutor off, like speaking over it does
                await self.interrupt_playback()
                await client.cancel_response(active, self.step_timeout)
            else:
                await client.wait_for(
                    lambda e: e.type == "response.done" and e.response.id == active,
                    self.step_timeout * RESPONSE_FINISH_STEPS,
                )
        try:
            # Confirmed before the lock is released: until `response.created` the tracker knows of no
            # active response, and a second create would be refused.
            await client.request(
                {"type": "response.create"},
                expect="response.created",
                timeout=self.step_timeout,
                tolerate=frozenset({ALREADY_ACTIVE}),
            )
        except RealtimeRequestError as exc:
            if exc.code != ALREADY_ACTIVE:
                raise
            # Server VAD started one for the learner's turn first: that response is the answer.
            self.log.info("response already started by the server", extra={"event_id": exc.event_id})

    async def add_item(self, item: dict) -> None:
        """`conversation.item.create`; the caller holds `lock` (nothing is sent while a resumed session
        is being configured)."""
        await self.client().send({"type": "conversation.item.create", "item": item})

    async def function_output(self, call_id: str, output: dict) -> None:
        await self.add_item({"type": "function_call_output", "call_id": call_id, "output": json.dumps(output)})

    async def interrupt_playback(self) -> None:
        """The learner cut the tutor off: the browser drops what it has not played yet at once, and
        the item is cut upstream where the learner stopped hearing it (so the model knows)."""
        self.relay.silence_current()
        flushed = await self.learner.request_flush()
        self.spawn(self._truncate_when_flushed(flushed), "truncate")

    async def _truncate_when_flushed(self, flushed: asyncio.Future) -> None:
        client = self.client()
        async with asyncio.timeout(self.step_timeout):
            position = await flushed
            item = client.tracker.item(position.item_id)
            if item is not None and client.tracker.responses[item.response_id].active:
                # truncate once its response has ended (cancelled by VAD or by us)
                await client.wait_for(
                    lambda e: e.type == "response.done" and e.response.id == item.response_id, self.step_timeout
                )
        await client.truncate_played(position.item_id, position.played_ms, self.step_timeout)
