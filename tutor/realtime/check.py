"""The day-one check of the real Realtime API (`python manage.py realtime_check`, issue 25).

Nothing in the test suite can reach the real service, so an operator runs this once with the deployment's
own configuration (key, realtime model, voices, VAD, transcription model, the tutor's tool) before
learners do. It opens a tutor-shaped session and a narrator-shaped one, as Parla does, and tries the
requests a placement makes: each becomes one row, ok or failed with the API's own message.

Strict, unlike a learner's session: the tutor's configuration is sent as configured, without the
fallbacks of tutor.realtime.fallback, so that a refusal shows here (with its text) instead of being
worked around in every session.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tutor import persona
from tutor.realtime.audio import audio_ms
from tutor.realtime.client import RealtimeClient, RealtimeError, RealtimeRefused, RealtimeRequestError

SHORT_REPLY = {
    "instructions": "Say only this, in the learner's target language, as one short sentence: hello, let's begin.",
    "output_modalities": ["audio"],
    "tool_choice": "none",
}


class CheckFailed(Exception):
    """A step got an answer, but not the one a placement needs (e.g. a reply without audio)."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass
class Row:
    name: str
    ok: bool | None  # None: skipped (an earlier step of the same session failed)
    detail: str = ""

    @property
    def status(self) -> str:
        return "ok" if self.ok else "skipped" if self.ok is None else "FAILED"


@dataclass(frozen=True)
class CheckConfig:
    url: str
    api_key: str | None
    model: str
    tutor_voice: str
    summary_voice: str
    transcription_model: str
    target_language: str
    reasoning_effort: str | None
    speed_beginner: float
    speed_default: float
    timeout: float  # per confirmed step
    reply_timeout: float  # for a whole spoken reply


def _error_text(exc: BaseException) -> str:
    """The API's own words for a failure."""
    if isinstance(exc, RealtimeRequestError):
        return f"{exc.code or exc.error.type}: {exc.error.message}"
    if isinstance(exc, RealtimeRefused):
        return f"{exc.code or exc.status or exc.close_code}: {exc.message}"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__


class Checker:
    """Runs the steps in order; a step that fails skips the rest of its session."""

    def __init__(self, config: CheckConfig):
        self.config = config
        self.rows: list[Row] = []

    async def step(self, name: str, action: Callable[[], Awaitable[str]], *, skip: bool = False) -> bool:
        if skip:
            self.rows.append(Row(name, None, "an earlier step failed"))
            return False
        try:
            detail = await action()
        except (RealtimeError, TimeoutError, OSError, CheckFailed) as exc:
            self.rows.append(Row(name, False, _error_text(exc)))
            return False
        self.rows.append(Row(name, True, detail))
        return True

    def client(self, name: str) -> RealtimeClient:
        config = self.config
        return RealtimeClient(config.url, api_key=config.api_key, model=config.model, name=f"check-{name}",
                              validate_sent=True, strict_read=False, open_timeout=config.timeout)

    async def run(self) -> list[Row]:
        await self.tutor()
        await self.narrator()
        return self.rows

    async def tutor(self) -> None:
        config = self.config
        client = self.client("tutor")
        session = dict(target_language=config.target_language, native_language="en", voice=config.tutor_voice,
                       transcription_model=config.transcription_model, speed_beginner=config.speed_beginner,
                       speed_default=config.speed_default, reasoning_effort=config.reasoning_effort)
        reply: dict[str, Any] = {}
        try:
            ok = await self.step("tutor: connect", lambda: self._connect(client))
            ok = await self.step(
                f"tutor: configure (voice {config.tutor_voice}, transcription {config.transcription_model}, "
                "semantic VAD, record_probe tool)",
                lambda: self._update(client, persona.tutor_session_config(level="B1", **session)), skip=not ok)
            ok = await self.step("tutor: level update (server VAD, beginner speed)", lambda: self._update(
                client, persona.tutor_session_config(level="A1", **session)), skip=not ok) and ok
            spoke = await self.step("tutor: one short spoken reply", lambda: self._reply(client, SHORT_REPLY, reply),
                                    skip=not ok)
            await self.step("tutor: cancel with nothing active", lambda: self._cancel(client, reply), skip=not spoke)
            await self.step("tutor: truncate a played item", lambda: self._truncate(client, reply), skip=not spoke)
            await self.step("tutor: delete an item", lambda: self._delete(client), skip=not ok)
        finally:
            await client.close()

    async def narrator(self) -> None:
        client = self.client("narrator")
        try:
            ok = await self.step("narrator: connect", lambda: self._connect(client))
            ok = await self.step(f"narrator: configure (voice {self.config.summary_voice})", lambda: self._update(
                client, persona.narrator_session_config(self.config.summary_voice)), skip=not ok)
            await self.step("narrator: speak a summary", lambda: self._reply(
                client, persona.summary_response("Your level is B1."), {}), skip=not ok)
        finally:
            await client.close()

    # --- the steps ---------------------------------------------------------------------------------

    async def _connect(self, client: RealtimeClient) -> str:
        created = await client.connect()
        return f"session {created.session.id if created.session else '?'}, model {self.config.model}"

    async def _update(self, client: RealtimeClient, session: dict) -> str:
        updated = await client.request({"type": "session.update", "session": session}, "session.updated",
                                       self.config.timeout)
        return f"voice {client.tracker.voice}" if updated.session else "confirmed"

    async def _reply(self, client: RealtimeClient, response: dict, found: dict) -> str:
        created = await client.request({"type": "response.create", "response": response}, "response.created",
                                       self.config.timeout)
        response_id = created.response.id
        done = await client.wait_for(lambda e: e.type == "response.done" and e.response.id == response_id,
                                     self.config.reply_timeout)
        require(done.response.status == "completed", f"response ended {done.response.status}: {done.response.status_details}")
        state = client.tracker.responses[response_id]
        audio = [client.tracker.items[i] for i in state.item_ids if client.tracker.items[i].audio_bytes]
        require(bool(audio), "the response completed without the audio it was asked for")
        found.update(response_id=response_id, item_id=audio[0].item_id, audio_ms=audio[0].audio_ms)
        return f"{sum(audio_ms(item.audio_bytes) for item in audio)} ms of audio"

    async def _cancel(self, client: RealtimeClient, reply: dict) -> str:
        tolerated = client.tolerated_errors
        status = await client.cancel_response(reply["response_id"], self.config.timeout)
        require(client.tolerated_errors == tolerated + 1 or status == "completed", f"ended {status}")
        return "refused as not active, session unaffected"

    async def _truncate(self, client: RealtimeClient, reply: dict) -> str:
        played = reply["audio_ms"] // 2
        require(await client.truncate_played(reply["item_id"], played, self.config.timeout), "nothing to truncate")
        return f"cut at {played} ms"

    async def _delete(self, client: RealtimeClient) -> str:
        event_id = client.next_event_id()
        added = await client.request(
            {"type": "conversation.item.create", "event_id": event_id, "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hola."}]}},
            lambda e: e.type in ("conversation.item.added", "conversation.item.created"), self.config.timeout)
        item_id = added.item.id
        await client.request({"type": "conversation.item.delete", "item_id": item_id},
                             lambda e: e.type == "conversation.item.deleted" and e.item_id == item_id, self.config.timeout)
        return f"item {item_id} deleted"
