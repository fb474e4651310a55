"""TutorConsumer: the `/ws/tutor/` socket of one learner. A thin adapter.

Socket handlers validate frames (tutor.realtime.wire) and call the session runtime; the runtime's upstream
read loop is its own task, never awaited here. The consumer is also the runtime's `LearnerPort`: the
one place that writes to the browser, through a send queue with a limit (tutor.backpressure): a
browser that reads nothing is closed with 4008 instead of being buffered for without bound. Audio never
travels over the channel layer; the layer carries only small control messages between a learner's
connections (Start in a new tab supersedes the session running in another).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer
from django.conf import settings

from assessments import services
from assessments.roles import learner_for
from tutor import backpressure, drain, loopwatch, metrics
from tutor.realtime import wire
from tutor.auth import refusal_code
from tutor.realtime.wire import ClientError, State
from tutor.live import TEACHERS_GROUP, can_watch
from tutor.realtime.relay import FlushRequests, LearnerPort, PlaybackWatch
from tutor.realtime.tasks import cancel_and_wait
from tutor.runtime import capacity, resumption
from tutor.runtime.resumption import learner_group
from tutor.runtime.session import SessionConfig, TutorSessionRuntime

logger = logging.getLogger(__name__)


def _queue_of(receive) -> asyncio.Queue | None:
    """The queue behind an ASGI `receive` callable: an asyncio.Queue's `get` (Daphne's
    create_application, and channels.testing's communicators), or Uvicorn's websocket protocol's
    `receive`, which takes from its `queue` (and resumes reading the socket once it is empty,
    websockets_sansio_impl.py); None for anything else. Only counted: what waits is taken with
    `receive` itself, which returns at once while the queue holds something."""
    owner = getattr(receive, "__self__", None)
    if isinstance(owner, asyncio.Queue) and receive == owner.get:
        return owner
    queue = getattr(owner, "queue", None)
    if type(owner).__name__ == "WebSocketsSansIOProtocol" and isinstance(queue, asyncio.Queue):
        return queue
    return None


class TutorConsumer(AsyncWebsocketConsumer, LearnerPort):
    # --- socket handlers -------------------------------------------------------------------------

    async def __call__(self, scope, receive, send):
        """However the connection ends (a close, an exception in any handler, a cancellation), the
        session runtime ends with it: its upstream session closed, its tasks cancelled and awaited."""
        self.runtime: TutorSessionRuntime | None = None
        self.outbox: backpressure.SendQueue | None = None
        self.socket: backpressure.DaphneSocket | backpressure.UvicornSocket | None = scope.get(backpressure.SCOPE_KEY)
        self.inbox = _queue_of(receive)
        self.receive_waiting = receive
        self.closed_for_drain = False
        self.closing = False  # a close frame is on its way
        self.session_over = False  # the learner was told `state: ended` (one session per connection)
        self.failing: asyncio.Task | None = None  # ending the session after one of its tasks failed
        self.detaches = resumption.DetachWaits()  # a resume waiting for another connection to let go
        self.resuming: asyncio.Task | None = None  # taking a session back (command_session_resume)
        try:
            await super().__call__(scope, receive, send)
        finally:
            drain.current.leave(self)
            await cancel_and_wait(self.resuming)
            if self.failing is not None:
                await asyncio.shield(self.failing)  # it ends the session: it must not be cut short
            await self._end_runtime("server_error")
            if self.outbox is not None:
                await self.outbox.aclose()
            if self.socket is not None:
                self.socket.unwatch()

    async def dispatch(self, message):
        """Handle `message`, then every message of the learner's socket already waiting behind it.

        Channels' `await_many_dispatch` takes three event-loop turns per message (a task per
        `receive()`, then `asyncio.wait`; channels/utils.py, channels 4.3). With hundreds of learners a
        turn of the loop takes tens of milliseconds, so a socket that sends ten audio frames a second
        could be served fewer than that: its frames queued in Daphne for a second and more (measured,
        docs/benchmarks.md, load). What is already queued is handled here, in order, in one turn.
        (Daphne hands the application its per-connection queue's `get` as `receive`; Uvicorn its
        protocol's `receive`, see `_queue_of`.)"""
        await self._dispatch_one(message)
        if message["type"] == "websocket.receive" and self.inbox is not None:
            for _ in range(self.inbox.qsize()):  # what waited then; what comes meanwhile takes its turn
                await self._dispatch_one(await self.receive_waiting())

    async def _dispatch_one(self, message):
        """The learner's messages skip Channels' per-message database cleanup: AsyncConsumer.dispatch
        awaits `aclose_old_connections()` (a hop to the one shared sync thread, behind every database
        write of every session) before each handler (channels/consumer.py, channels 4.3). Audio frames
        (ten a second) and playback reports (two a second while the tutor speaks) touch no database,
        and every database call of a session goes through `database_sync_to_async`, which closes old
        connections itself around each call (channels/db.py, DatabaseSyncToAsync); no handler uses the
        async ORM. Measured (docs/benchmarks.md, load): at 200 learners the reports queued behind the
        database thread held up the audio of the same socket by seconds."""
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    async def connect(self):
        self.flushes = FlushRequests()
        self.playback = PlaybackWatch(margin=settings.PARLA_PLAYBACK_MARGIN)
        self.open = False
        clock = asyncio.get_running_loop().time
        self.limits = {
            "audio": wire.RateLimit(wire.AUDIO_FRAMES_PER_SECOND, wire.AUDIO_FRAMES_BURST, clock),
            "control": wire.RateLimit(wire.CONTROL_PER_SECOND, wire.CONTROL_BURST, clock),
            "answer.text": wire.RateLimit(wire.ANSWERS_PER_SECOND, wire.ANSWERS_BURST, clock),
        }
        self.refused = 0
        user = self.scope.get("user")
        self.learner = await database_sync_to_async(learner_for)(user)
        # Accept, then close: a close code sent before the handshake completes never reaches the
        # browser (see tutor/auth.py).
        await self.accept()
        self.outbox = backpressure.SendQueue(
            self.base_send,
            self.socket.watch() if self.socket is not None else None,
            max_bytes=settings.PARLA_SEND_QUEUE_BYTES,
            max_stall=settings.PARLA_SEND_STALL_SECONDS,
            on_stuck=self._not_reading,
        )
        if self.learner is None:
            await self.close(code=refusal_code(user))
            return
        self.group = learner_group(self.learner.pk)
        if drain.current.draining:  # this process is going away: the page reconnects, through the proxy
            await self.close_for_drain()
            return
        self.open = True
        drain.current.join(self)
        await self.channel_layer.group_add(self.group, self.channel_name)
        # Opening the page takes nothing over: only Start does (command_session_start); until then
        # the page says that a session runs elsewhere, and that Start would end it there.
        elsewhere = await database_sync_to_async(services.has_running_session)(self.learner.pk)
        await self.send_event(wire.state(
            State.READY, demo=settings.PARLA_DEMO_MODE, language=self.learner.target_language, running_elsewhere=elsewhere,
        ))

    async def receive(self, text_data=None, bytes_data=None):
        if not self.open:
            return
        try:
            if bytes_data is not None:
                self._within_rate("audio")
                pcm = wire.parse_audio(bytes_data)
                await self._runtime().learner_audio(pcm)  # before session.start: not_started
                return
            self._within_rate("control")
            message = wire.parse_control(text_data or "")
            if message["type"] == "answer.text":
                self._within_rate("answer.text")
            await self.commands[message["type"]](self, message)
        except ClientError as exc:
            await self._refuse(exc)
        except Exception:
            logger.exception("socket handler failed", extra={"learner_id": self.learner.pk})
            await self._fail()

    async def _fail(self) -> None:
        """Not the browser's fault: say so, end the session cleanly, close the socket with a code
        Daphne sends (wire.CLOSE_SERVER_ERROR)."""
        if not self.open:
            return
        await self.send_event(wire.error("session_error", "Something went wrong on our side; the session has ended."))
        self.open = False
        await self._end_runtime("server_error")
        await self.close(code=wire.CLOSE_SERVER_ERROR)

    async def disconnect(self, code):
        # Still open: the learner's side dropped (not a close of ours): the placement awaits their return.
        dropped, self.open = self.open, False
        await cancel_and_wait(self.resuming)  # a resume that had not taken the session yet stops here
        await self._end_runtime("learner_left", detach=dropped)
        if self.learner is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def _end_runtime(self, reason: str, detach: bool = False) -> None:
        runtime, self.runtime = self.runtime, None
        if runtime is not None:
            try:
                await runtime.close(reason, detach=detach)
            finally:
                capacity.sessions.give_back()

    async def close(self, code=None, reason=None):
        """What waits in the send queue goes out before the close frame. A browser that does not read
        may never take either: the connection is dropped if the close is not answered within a
        short grace (under Uvicorn the sends themselves wait for a writable transport until then). A
        connection the browser closed meanwhile is not an error: its disconnect is on its way."""
        if self.closing:  # once (a second close frame is an error under Uvicorn)
            return
        self.closing = True
        if self.socket is not None:
            self.socket.abort_unanswered_close(wire.NOT_READING_CLOSE_GRACE_SECONDS)
        if self.outbox is not None:
            await self.outbox.flush()
        try:
            await super().close(code=code, reason=reason)
        except backpressure.CLOSED_ERRORS as exc:
            logger.info("close dropped: the connection is gone", extra={"code": code, "error": str(exc)})

    async def _not_reading(self, reason: str) -> None:
        """The send queue's verdict: the browser reads nothing. End the session, then close with 4008;
        the connection is dropped if the close frame is not answered within a short grace."""
        logger.warning("learner not reading", extra={"learner_id": self.learner.pk, "reason": reason})
        metrics.send_queue_closed()
        self.open = False
        await self._end_runtime("learner_left")
        await self.close(code=wire.CLOSE_NOT_READING)  # the queue was dropped: nothing to flush

    def _within_rate(self, kind: str) -> None:
        if not self.limits[kind].allow():
            raise ClientError("rate_limited", f"Too many {kind} messages; slow down.")

    async def _refuse(self, exc: ClientError) -> None:
        """One error event per refused message; a browser that keeps sending refused messages (no page
        does) is closed, so its work and the replies queued for it stay bounded."""
        self.refused += 1
        if self.refused > wire.MAX_REFUSED:
            logger.warning("too many refused messages", extra={"learner_id": self.learner.pk, "code": exc.code})
            self.open = False
            await self._end_runtime("learner_left")
            await self.close(code=wire.CLOSE_TOO_MANY)  # its close frame waits behind the replies it has not read
            return
        await self.send_event(exc.as_event())

    # --- command helpers ---------------------------------------------------------------------------

    async def command_session_start(self, message):
        if not await self._admit():
            return
        try:
            # One session per learner: Start here ends the one running in another window.
            await self.channel_layer.group_send(self.group, {"type": "session.superseded", "origin": self.channel_name})
            config = await database_sync_to_async(SessionConfig.for_learner)(self.learner)
            config = dataclasses.replace(config, self_assessment=message.get("self_assessment", ""))
            self.runtime = TutorSessionRuntime(self, self.learner.pk, config, learner_name=self.learner.user.get_username())
        except BaseException:
            capacity.sessions.give_back()
            raise
        self.runtime.launch()

    async def command_session_resume(self, message):
        """The page reconnected after its socket dropped (or its process drained): the same placement
        continues here, rebuilt from what is stored (tutor.runtime.resumption)."""
        if not resumption.enabled():
            raise ClientError("resume_unknown", "Sessions cannot be continued on this server. Press Start to begin a new one.")
        if self.resuming is not None or not await self._admit():
            return
        # In a task of its own: the claim may wait for another connection of this learner to let go,
        # which it says through the channel layer, whose messages this consumer's loop dispatches.
        self.resuming = asyncio.create_task(self._resume(message["session_id"]), name="learner-session-resume")

    async def _resume(self, session_id: int) -> None:
        try:
            claim = await self.detaches.take(self.learner.pk, session_id, self.channel_name)
            if claim.refused:
                raise resumption.refusal(claim)
            if claim.outcome == resumption.reconnection.DELIVER:  # the handover was cut short: its assessment
                capacity.sessions.give_back()
                self.session_over = True
                await resumption.show_assessment(self, session_id, claim.assessment_id)
                return
            config = await database_sync_to_async(SessionConfig.for_learner)(self.learner)
            stored, config = await resumption.load(session_id, config)
            self.runtime = TutorSessionRuntime(
                self, self.learner.pk, config, learner_name=self.learner.user.get_username(), stored=stored)
            self.runtime.launch()
        except ClientError as exc:
            capacity.sessions.give_back()
            await self.send_event(exc.as_event())
        except Exception:
            if self.runtime is None and not self.session_over:
                capacity.sessions.give_back()
                await self._let_go(session_id)
            logger.exception("resume failed", extra={"learner_id": self.learner.pk, "session_id": session_id})
            await self._fail()
        except asyncio.CancelledError:
            if self.runtime is None and not self.session_over:
                capacity.sessions.give_back()
                await self._let_go(session_id)  # the socket went away between the claim and the runtime
            raise

    async def _let_go(self, session_id: int) -> None:
        if session_id in self.detaches.claimed:  # this connection's claim took it: nobody serves it now
            await resumption.let_go(session_id)

    async def _admit(self) -> bool:
        """A new session (or a resumed one) may run here: a capacity slot is taken, or the learner was
        told why not (this process drains: the page reconnects elsewhere; it is at capacity)."""
        if self.runtime is not None or self.session_over:
            raise ClientError("already_started", "The session has already started.")
        if drain.current.draining:
            metrics.refused("draining")
            await self.close_for_drain()
            return False
        stalled = loopwatch.overloaded()
        if stalled is not None:
            await self._at_capacity("event loop stalled", "stalls", stalled_percent=round(100 * stalled))
            return False
        if not capacity.sessions.take(settings.PARLA_MAX_SESSIONS_PER_PROCESS):
            await self._at_capacity("maximum sessions", "capacity", max_sessions=settings.PARLA_MAX_SESSIONS_PER_PROCESS)
            return False
        return True

    async def _at_capacity(self, why: str, cause: str, **figures) -> None:
        """Refused, not slowed: the page shows the session as ended with the message, Start tries again."""
        logger.warning(
            "session refused at capacity", extra={"learner_id": self.learner.pk, "why": why, **figures}
        )
        metrics.refused(cause)
        await self.send_event(wire.state(State.ENDED))
        await self.send_event(
            wire.error("at_capacity", "Parla is busy right now and cannot start your session. Please try again in a few minutes.")
        )
        self.open = False
        await self.close(code=wire.CLOSE_TRY_AGAIN_LATER)

    async def command_session_stop(self, message):
        await self._runtime().stop()

    async def command_answer_text(self, message):
        await self._runtime().answer_text(message["text"])

    async def command_playback_flushed(self, message):
        if not self.flushes.answer(message["request_id"], message.get("item_id"), message["played_ms"]):
            if self.flushes.given_up(message["request_id"]):
                logger.info("late playback flush answer ignored", extra={"request_id": message["request_id"]})
                return
            raise ClientError("unknown_request", "No playback flush is waiting for that request_id.")
        self.playback.flush_answered(message.get("item_id"), message["played_ms"])

    async def command_playback_report(self, message):
        # What the learner hears: barge-in, the speaking/listening state and "delivered" follow it.
        # A report of an item this connection never sent changes nothing.
        self.playback.report(message["item_id"], message.get("kind", "progress"), message["played_ms"])

    # --- the drain (tutor/drain.py) ------------------------------------------------------------------------

    def in_session(self) -> bool:
        """A session runs on this socket until the learner has been told it ended (send_event): the
        drain's last close must not overtake that last event."""
        return self.runtime is not None and not self.session_over

    async def end_for_drain(self) -> None:
        """The drain's deadline: the placement is handed over to reconnection (detached, the socket
        closed with 4012: the page reconnects to another process and resumes it there); a handover in
        progress finishes here. Without resuming (PARLA_RESUME_SECONDS=0) the placement ends with what
        is known, its assessment delivered."""
        if self.runtime is None:
            return
        if not resumption.enabled():
            await self.runtime.stop("server_drain")
        elif self.runtime.phase.now.placing:
            self.open = False
            await self._end_runtime("server_drain", detach=True)
            await self._close_4012()

    async def close_for_drain(self) -> None:
        """4012 (RFC 6455's 1012 "Service Restart"): the page reconnects, and starts there a session it
        was starting (or resumes one handed over). A placement still running here is handed over first."""
        if self.runtime is not None and resumption.enabled():
            # Placing: detached for the page to resume; a handover that did not finish: its assessment
            # is kept and shown on reconnecting.
            self.open = False
            await self._end_runtime("server_drain", detach=True)
        await self._close_4012()

    async def _close_4012(self) -> None:
        if self.closed_for_drain:
            return
        self.closed_for_drain = True
        logger.info("learner socket closed by the drain", extra={
            "learner_id": self.learner.pk if self.learner else None,
            "session": self.runtime.state if self.runtime is not None else None})
        self.open = False
        await self.close(code=wire.CLOSE_SERVICE_RESTART)

    commands = {
        "session.start": command_session_start,
        "session.resume": command_session_resume,
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
            await self.outbox.put({"type": "websocket.send", "text": json.dumps(event)})
        if event["type"] == "state" and event["state"] == State.ENDED and self.runtime is not None:
            self.session_over = True  # queued above: a close from now on sends it first
            drain.current.changed()

    async def send_audio(self, pcm: bytes) -> None:
        if self.open:
            await self.outbox.put({"type": "websocket.send", "bytes": pcm})

    def session_failed(self) -> None:
        # In a task of the consumer's own: ending the runtime cancels and awaits the failed task.
        if self.open and self.failing is None:
            self.failing = asyncio.create_task(self._fail(), name="learner-session-failed")

    async def request_flush(self):
        self.playback.flushed()  # what was queued will not be heard
        return await self.flushes.request(self.send_event)

    # --- channel-layer handlers -----------------------------------------------------------------------

    async def session_superseded(self, message):
        """Start was pressed in another window: a session running here stops (a page without one is
        left alone: it may start one later, which takes over in turn)."""
        if message["origin"] == self.channel_name or self.runtime is None or self.runtime.state == State.ENDED:
            return
        await self.send_event(wire.error("superseded", "You started a session in another window, so this one has stopped."))
        self.open = False
        await self.close(code=wire.CLOSE_SUPERSEDED)


    async def session_reclaim(self, message):
        """The learner's page reconnected on another connection and resumes the session running here:
        this one was left behind (a network change the server had not seen drop). It lets go."""
        if (message["origin"] == self.channel_name or self.runtime is None
                or self.runtime.session_id != message["session_id"]):
            return
        self.open = False
        await self._end_runtime("learner_left", detach=True)  # detached: the new connection takes it
        await self.close(code=wire.CLOSE_SUPERSEDED)

    async def session_detached(self, message):
        """A connection of this learner let go of a session: a resume waiting for it goes on."""
        self.detaches.detached(message["session_id"])

    async def session_logged_out(self, message):
        """The learner logged out (tutor.signals): the session ends as on a disconnect, then the socket."""
        await self.send_event(wire.error("logged_out", "You logged out, so this session has ended."))
        self.open = False
        await self._end_runtime("learner_left")
        await self.close(code=wire.CLOSE_NOT_AUTHENTICATED)


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
