"""TutorConsumer: the `/ws/tutor/` socket of one learner. A thin adapter.

Socket handlers validate frames (tutor.realtime.wire) and call the session runtime; the runtime's upstream
read loop is its own task, never awaited here. The consumer is also the runtime's `LearnerPort`: the
one place that writes to the browser. Audio never travels over the channel layer; the layer carries
only small control messages between a learner's connections (a new tab supersedes the old one).
"""

from __future__ import annotations

import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer
from django.conf import settings

from assessments.roles import learner_for
from tutor.realtime import wire
from tutor.auth import refusal_code
from tutor.realtime.exceptions import ClientError
from tutor.live import TEACHERS_GROUP, can_watch
from tutor.realtime.relay import FlushRequests, LearnerPort
from tutor.runtime.session import SessionConfig, TutorSessionRuntime

logger = logging.getLogger(__name__)

CLOSE_SUPERSEDED = 4409  # the same learner opened the tutor in another tab (browser: static/tutor/protocol.js)


def learner_group(learner_id: int) -> str:
    return f"learner-{learner_id}"


class TutorConsumer(AsyncWebsocketConsumer, LearnerPort):
    # --- socket handlers -------------------------------------------------------------------------

    async def connect(self):
        self.runtime: TutorSessionRuntime | None = None
        self.flushes = FlushRequests()
        self.open = False
        user = self.scope.get("user")
        self.learner = await database_sync_to_async(learner_for)(user)
        # Accept, then close: a close code sent before the handshake completes never reaches the
        # browser (see tutor/auth.py).
        await self.accept()
        if self.learner is None:
            await self.close(code=refusal_code(user))
            return
        self.open = True
        self.group = learner_group(self.learner.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.channel_layer.group_send(self.group, {"type": "session.superseded", "origin": self.channel_name})
        await self.send_event(
            {
                "type": "state",
                "state": "ready",
                "demo": settings.PARLA_DEMO_MODE,
                "language": self.learner.target_language,
            }
        )

    async def receive(self, text_data=None, bytes_data=None):
        if not self.open:
            return
        try:
            if bytes_data is not None:
                pcm = wire.parse_audio(bytes_data)
                if self.runtime is not None:
                    await self.runtime.learner_audio(pcm)
                return
            message = wire.parse_control(text_data or "")
            await self.commands[message["type"]](self, message)
        except ClientError as exc:
            await self.send_event(exc.as_event())

    async def disconnect(self, code):
        self.open = False
        if self.runtime is not None:
            await self.runtime.close("learner_left")
            self.runtime = None
        if self.learner is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    # --- command helpers ---------------------------------------------------------------------------

    async def command_session_start(self, message):
        if self.runtime is not None:
            raise ClientError("already_started", "The session has already started.")
        config = await database_sync_to_async(SessionConfig.for_learner)(self.learner)
        self.runtime = TutorSessionRuntime(self, self.learner.pk, config, learner_name=self.learner.user.get_username())
        self.runtime.launch()

    async def command_session_stop(self, message):
        await self._runtime().stop()

    async def command_answer_text(self, message):
        await self._runtime().answer_text(message["text"])

    async def command_playback_flushed(self, message):
        if not self.flushes.answer(message["request_id"], message.get("item_id"), message["played_ms"]):
            raise ClientError("unknown_request", "No playback flush is waiting for that request_id.")

    async def command_playback_report(self, message):
        pass  # informational: the flush answer is what the handover uses

    commands = {
        "session.start": command_session_start,
        "session.stop": command_session_stop,
        "answer.text": command_answer_text,
        "playback.flushed": command_playback_flushed,
        "playback.report": command_playback_report,
    }

    def _runtime(self) -> TutorSessionRuntime:
        if self.runtime is None:
            raise ClientError("not_started", "Start the session first.")
        return self.runtime

    # --- LearnerPort: the only writer to the browser --------------------------------------------------

    async def send_event(self, event: dict) -> None:
        if self.open:
            await self.send(text_data=json.dumps(event))

    async def send_audio(self, pcm: bytes) -> None:
        if self.open:
            await self.send(bytes_data=pcm)

    async def request_flush(self):
        return await self.flushes.request(self.send_event)

    # --- channel-layer handlers -----------------------------------------------------------------------

    async def session_superseded(self, message):
        if message["origin"] == self.channel_name:
            return
        await self.send_event(
            {"type": "error", "code": "superseded", "message": "Parla was opened in another window; this one has stopped."}
        )
        self.open = False
        await self.close(code=CLOSE_SUPERSEDED)


class TeacherLiveConsumer(AsyncJsonWebsocketConsumer):
    """`/ws/teacher/live/`: snapshots of running tutor sessions for teachers (read-only)."""

    async def connect(self):
        user = self.scope.get("user")
        self.watching = await database_sync_to_async(can_watch)(user)  # permissions come from the database
        await self.accept()
        if not self.watching:
            await self.close(code=refusal_code(user))
            return
        await self.channel_layer.group_add(TEACHERS_GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs):
        await self.send_json({"type": "error", "code": "read_only", "message": "The live view only listens."})

    async def disconnect(self, code):
        if self.watching:
            await self.channel_layer.group_discard(TEACHERS_GROUP, self.channel_name)

    # --- channel-layer handlers -----------------------------------------------------------------------

    async def live_session(self, message):
        await self.send_json({"type": "session", "session": message["session"]})
