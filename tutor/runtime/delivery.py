"""AssessmentDelivery: hand the live session from the tutor to the spoken assessment summary.

The protocol of DESIGN section 3, each step confirmed by a server event and bounded by a timeout:

    1 freeze      learner audio no longer forwarded; turn detection off (session.updated)
    2 keepalive   heartbeat to the browser + websocket ping upstream while the grader works
    3 cancel      only a response the tracker knows is active; wait for *its* response.done
    4 clear       browser flush -> truncate the real item at the played ms -> input buffer cleared
    5 voice       same session if it never spoke (session.updated shows the voice), else the narrator
                  session, opened before the ceiling (Narrator.prepare) or at the latest now
    6 speak       the level at once (it is the placement floor, known now), while the grader works;
                  then the feedback when the grade is ready; then wait for the page to report that the
                  summary played to its end (bounded by its length plus a margin) -> delivered

Grading starts with the handover and runs beside it: the learner hears their level one round trip
after the ceiling, whatever the grading time. Steps 1 and 3-4 (tutor session) and the narrator's step
6 run side by side: they are different upstream sessions, and what the learner hears is ordered by
the browser flush, which is sent before the narrator is asked to speak. Nothing here sleeps to "let
the server settle": every wait is for an event.

The assessment row exists before this worker starts (status pending). Its status is written after
each stage; whatever fails, the learner gets the summary as text and the row says why it was not spoken.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from contextlib import asynccontextmanager
from typing import Any

from assessments.grading import Grader, GradeInput, GradeResult, fallback_grade, grade_by_rules, reconcile
from assessments.grading.summary import feedback_after, opening
from tutor import metrics, persona
from tutor.realtime.client import RealtimeClient, RealtimeError
from tutor.realtime.relay import LearnerPort, PlaybackPosition
from tutor.realtime import clock, wire
from tutor.realtime.logs import bind
from tutor.realtime.playback import REPORTED
from tutor.realtime.tasks import cancel_and_wait, wait_responsive
from tutor.runtime.handover import AssessmentStore, DeliveryOutcome, HandoverConfig, TutorLink
from tutor.runtime.narrator import close_narrator
from tutor.realtime.wire import State

logger = logging.getLogger(__name__)

class StepFailed(RealtimeError):
    def __init__(self, step: str, cause: BaseException | str):
        self.step = step
        text = cause if isinstance(cause, str) else (str(cause) or type(cause).__name__)
        super().__init__(f"{step}: {text}")


class AssessmentDelivery:
    """The owned worker task of one assessment; `run()` is the whole handover."""

    def __init__(
        self,
        *,
        assessment_id: int,
        grade_input: GradeInput,
        grader: Grader,
        tutor: TutorLink,
        learner: LearnerPort,
        store: AssessmentStore,
        config: HandoverConfig,
    ):
        self.assessment_id = assessment_id
        self.grade_input = grade_input
        self.grader = grader
        self.tutor = tutor
        self.client = tutor.client
        self.learner = learner
        self.store = store
        self.config = config
        self.problems: list[str] = []
        self.timings: dict[str, float] = {}
        self.heartbeats = 0
        self.spoken_items: list[str] = []  # the summary's audio items, heard when the page says so
        self.log = bind(logger, assessment_id=assessment_id, upstream=self.client.name)
        self._loop = asyncio.get_running_loop()

    async def run(self) -> DeliveryOutcome:
        self.timings["ceiling"] = self._loop.time()
        narrator = self.tutor.narrator.take(self.config.summary_voice)
        grading = asyncio.create_task(self.grade(), name=f"grade-{self.assessment_id}")
        result: GradeResult | None = None  # set once stored
        try:
            async with self.keepalive():
                client, speaker = await self.hand_over(narrator)  # the level, spoken while grading runs
                graded = await grading
            await self.store.graded(self.assessment_id, graded)
            result = graded
            await self._send_card(result, "graded")
            self.timings["grade_ready"] = self._loop.time()
            feedback = feedback_after(opening(self.grade_input), result.summary)
            if feedback:
                await self.speak(client, feedback, "feedback_audio")
            await self.heard()
        except Exception as exc:  # any failure: the summary stays stored and is shown as text
            if result is None and not grading.cancelled():
                # The summary is shown as text: the grader's, once it is done (grade() is bounded by
                # grade_timeout and always has an answer).
                result = await grading
                await self.store.graded(self.assessment_id, result)
                await self._send_card(result, "graded")
            return await self._fail(result, exc)
        finally:
            await cancel_and_wait(grading)
            await close_narrator(narrator)
        await self.store.delivered(self.assessment_id, "; ".join(self.problems))
        await self._send_card(result, "delivered")
        self.log.info("assessment delivered", extra={"speaker": speaker, "level": result.level})
        return DeliveryOutcome("delivered", result, speaker, self.problems, self.timings)

    # --- 1. freeze -----------------------------------------------------------------------------------

    async def freeze(self) -> None:
        """No new response can start: turn detection stops upstream (learner audio stopped at the ceiling)."""
        self.tutor.stop_learner_audio()
        try:
            await self.client.request(
                {"type": "session.update", "session": persona.frozen_session_update()},
                expect="session.updated",
                timeout=self.config.step_timeout,
            )
            self.log.info("session frozen")
        except (RealtimeError, TimeoutError) as exc:
            # Without VAD nothing new starts anyway (learner audio is no longer forwarded): go on.
            self._problem(StepFailed("freeze", exc))

    # --- 2. keepalive while grading -----------------------------------------------------------------

    @asynccontextmanager
    async def keepalive(self):
        task = asyncio.create_task(self._keepalive(), name=f"keepalive-{self.assessment_id}")
        try:
            yield
        finally:
            await cancel_and_wait(task)
            self.log.info("keepalive stopped", extra={"heartbeats": self.heartbeats})

    async def _keepalive(self) -> None:
        timer = clock.current()
        started = timer.now()
        interval = self.config.keepalive_interval
        while True:
            elapsed = timer.now() - started
            progress = min(0.95, elapsed / max(self.config.expected_grading_seconds, 0.001))
            self.heartbeats += 1
            await self.learner.send_event(wire.assessing(progress, int(elapsed * 1000)))
            if self.client.is_open:
                try:
                    await self.client.ping(timeout=interval)
                except (TimeoutError, RealtimeError, ConnectionError) as exc:
                    self.log.warning("upstream ping failed", extra={"error": str(exc)})
            await timer.sleep(interval)  # heartbeat period, not a wait for the server

    async def grade(self) -> GradeResult:
        """The grader's result held to the level and the evidence (grading.reconcile); the rules' on failure."""
        try:
            with metrics.GRADING.time():  # a grader that timed out counts with its timeout
                async with asyncio.timeout(self.config.grade_timeout):
                    return reconcile(self.grade_input, await self.grader.grade(self.grade_input))
        except Exception as exc:  # the rules grader is pure and always has an answer
            self._problem(StepFailed("grade", exc))
            return fallback_grade(self.grade_input, exc)

    # --- 3-6. the handover ---------------------------------------------------------------------------

    async def hand_over(self, narrator: asyncio.Task) -> tuple[RealtimeClient, str]:
        """Quiet the tutor and say the level in the summary voice; returns the session that spoke, and who."""
        self.tutor.stop_learner_audio()  # no new turn from the learner from here on
        self.tutor.relay.mute()  # no tutor audio reaches the learner after the flush below
        flushed = await self.learner.request_flush()
        quiet = asyncio.create_task(self.quiet_tutor(flushed), name=f"quiet-tutor-{self.assessment_id}")
        try:
            if self.client.tracker.may_produce_audio:
                # The tutor spoke (or may be about to): its voice can no longer change. The narrator
                # session is open (prepared before the ceiling) or opening; it need not wait for 1, 3-4.
                client = await self._narrator_ready(narrator)
                speaker = "narrator"
            else:
                await quiet  # same session: nothing may be active when the voice changes
                await self.switch_voice()
                self.tutor.relay.unmute(role="narrator")
                client, speaker = self.client, "tutor"
            # The level goes upstream first; the state change (teachers' live view, the page) meanwhile.
            speaking = asyncio.create_task(self.speak(client, opening(self.grade_input), "first_audio"))
            try:
                await self.tutor.set_state(State.SUMMARY)
                await speaking
            finally:
                await cancel_and_wait(speaking)
            self.timings["level_done"] = self._loop.time()
        finally:
            await self._finish(quiet)
        return client, speaker

    async def quiet_tutor(self, flushed: asyncio.Future) -> None:
        """Steps 1, 3 and 4 on the tutor session, in that order."""
        await self.freeze()
        await self.cancel_active_response()
        await self.clear(flushed)

    async def cancel_active_response(self) -> None:
        tracker = self.client.tracker
        if tracker.pending_creates and not tracker.has_active_response:
            # A response.create is in flight: wait until the server starts it (then cancel it) or refuses it.
            await self._step(
                "cancel",
                self.client.wait_for(
                    lambda e: e.type == "response.created" or tracker.pending_creates == 0,
                    self.config.step_timeout,
                ),
            )
        response_id = tracker.active_response_id
        if response_id is None:
            self.log.info("no active response to cancel")
            return
        if tracker.audio_finished(response_id):
            # Its audio is complete and only its done events are on the way: a cancel now would race
            # them (response_cancel_not_active). Wait for its response.done; cancel only if it lingers.
            try:
                await self.client.wait_for(
                    lambda e: e.type == "response.done" and e.response.id == response_id, self.config.step_timeout
                )
                self.log.info("response finished by itself", extra={"response_id": response_id})
                return
            except TimeoutError:
                pass
        status = await self._step("cancel", self.client.cancel_response(response_id, self.config.step_timeout))
        self.log.info("response cancelled", extra={"response_id": response_id, "status": status})

    async def clear(self, flushed: asyncio.Future) -> None:
        try:
            position: PlaybackPosition = await wait_responsive(flushed, self.config.step_timeout)
        except TimeoutError:
            flushed.cancel()  # a late answer is then known as late (FlushRequests.given_up), not pending
            # The browser did not say what it played: nothing is truncated (the tutor's context keeps
            # its whole last sentence), the rest of the handover goes on.
            self._problem(StepFailed("flush", "the browser did not answer playback.flush in time"))
        else:
            await self._step(
                "truncate", self.client.truncate_played(position.item_id, position.played_ms, self.config.step_timeout)
            )
        await self._step(
            "clear",
            self.client.request(
                {"type": "input_audio_buffer.clear"}, expect="input_audio_buffer.cleared", timeout=self.config.step_timeout
            ),
        )

    async def switch_voice(self) -> None:
        voice = self.config.summary_voice
        if self.client.tracker.assistant_audio_produced:  # cannot happen after quiet: checked to be sure
            raise StepFailed("voice", "the tutor session already produced audio")
        await self._step(
            "voice",
            self.client.request(
                {"type": "session.update", "session": persona.voice_session_update(voice)},
                expect="session.updated",
                timeout=self.config.step_timeout,
            ),
        )
        if self.client.tracker.voice != voice:
            raise StepFailed("voice", f"session.updated shows voice {self.client.tracker.voice!r}")
        self.log.info("voice switched", extra={"voice": voice})

    async def speak(self, client: RealtimeClient, summary: str, timing: str) -> None:
        """response.create with `summary`; returns when its response.done arrives. The first audio
        delta's time is recorded as `timings[timing]`."""
        ids: dict[str, str] = {}

        def created(event: Any) -> bool:
            if event.type == "response.created":
                ids["response"] = event.response.id
                return True
            return False

        def first_audio(event: Any) -> bool:
            if event.type == "response.output_audio.delta" and event.response_id == ids.get("response"):
                self.timings.setdefault(timing, self._loop.time())
                return True
            return False

        # Registered before the request: with a fast upstream the whole response can arrive at once.
        audio = client.expect(first_audio)
        done = client.expect(lambda e: e.type == "response.done" and e.response.id == ids.get("response"))
        try:
            await self._step(
                "speak",
                client.request(
                    {"type": "response.create", "response": persona.summary_response(summary)},
                    expect=created,
                    timeout=self.config.step_timeout,
                ),
            )
            finished = await self._step("speak", client.wait(done, self.config.speak_timeout))
        finally:
            audio.cancel()
            done.cancel()
        if finished.response.status != "completed":
            raise StepFailed("speak", f"summary response ended {finished.response.status}")
        tracker = client.tracker
        self.spoken_items += [i for i in tracker.responses[ids["response"]].item_ids if tracker.items[i].audio_bytes]
        self.log.info("summary spoken", extra={"response_id": ids["response"], "speaker": client.name})

    async def heard(self) -> None:
        """Delivered means heard: wait until the page reports that the summary played to its end.

        The upstream generates faster than real time, so `response.done` comes while most of the
        summary is still to be played. The wait is bounded (its length played in real time from the
        page's last report, plus the playback margin): a page that never reports the end does not hold
        the session, and the assessment is delivered with a note saying so.
        """
        playback = self.learner.playback
        outcomes = await playback.until_over(self.spoken_items)
        unheard = {item: how for item, how in outcomes.items() if how != REPORTED}
        if unheard:
            ms = playback.state.length_ms(self.spoken_items)
            self._problem(StepFailed("playback", (
                f"the page did not report the end of the summary ({ms} ms of audio: "
                f"{', '.join(sorted(set(unheard.values())))}); taken as heard after its length plus "
                f"{playback.state.margin:g} s")))
        else:
            self.log.info("summary heard", extra={"items": self.spoken_items})

    # --- internals -----------------------------------------------------------------------------------

    async def _narrator_ready(self, narrator: asyncio.Task) -> RealtimeClient:
        client, _relay = await self._step("narrator", wait_responsive(narrator, self.config.step_timeout))
        return client

    async def _finish(self, quiet: asyncio.Task) -> None:
        """Await the tutor-side steps; their failure is recorded, it does not unsay the summary."""
        if asyncio.current_task().cancelling():  # the session is closing: stop them too
            await cancel_and_wait(quiet)
            return
        try:
            await quiet
        except Exception as exc:
            self._problem(exc if isinstance(exc, StepFailed) else StepFailed("quiet", exc))

    async def _step(self, step: str, awaitable: Awaitable[Any]) -> Any:
        try:
            return await awaitable
        except StepFailed:
            raise
        except (RealtimeError, TimeoutError, ConnectionError) as exc:
            raise StepFailed(step, exc) from exc

    def _problem(self, exc: StepFailed) -> None:
        self.problems.append(str(exc))
        self.log.warning("handover step failed", extra={"step": exc.step, "error": str(exc)})

    async def _fail(self, result: GradeResult | None, exc: Exception) -> DeliveryOutcome:
        if result is None:
            result = grade_by_rules(self.grade_input)
            await self.store.graded(self.assessment_id, result)
        reason = "; ".join([*self.problems, str(exc)])
        await self.store.failed(self.assessment_id, reason)
        await self.learner.send_event(
            wire.error("summary_unavailable", "Your summary could not be read aloud; here it is as text.")
        )
        await self._send_card(result, "delivery_failed")
        self.log.warning("assessment delivery failed", extra={"reason": reason})
        return DeliveryOutcome("delivery_failed", result, "", [*self.problems, str(exc)], self.timings)

    async def _send_card(self, result: GradeResult, status: str) -> None:
        await self.learner.send_event(
            wire.assessment(
                self.assessment_id,
                result.level,
                result.criteria,
                result.summary,
                result.grader,
                status,
                self.grade_input.partial,
            )
        )
