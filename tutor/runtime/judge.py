"""AnswerJudge: the learner's answers, shown as they grow, closed, judged once and stored with fluency.

The tutor's lines are recorded here too (`tutor_said`): each is the question the next answer replies to.
An answer (tutor.runtime.answers) grows by fragments: each is shown to the learner and kept in its Turn
row as it comes (`show`). It is closed when the tutor has taken its turn (its reply spoke to the end),
when the tutor's record_probe says so, or when the placement ends early; then it is judged exactly
once, in order (`close`, `close_soon`): the rater's level beside the tutor's opinion, the placement
updated, the answer's final text, fluency and recording stored. What follows a judgement (the level
shown, the tutor's instructions, the assessment) is the runtime's (`on_judged`, `on_finished`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import TypeVar

from channels.db import database_sync_to_async

from assessments import services
from assessments.fluency import measure
from assessments.placement import Placement, PlacementUpdate
from assessments.rating import Rater
from assessments.transcript import LEARNER, TUTOR, Transcript
from tutor.realtime import wire
from tutor.realtime.audio import BYTES_PER_MS
from tutor.realtime.logs import BoundLogger
from tutor.realtime.relay import LearnerPort
from tutor.runtime.answers import AnswerCollector, OpenAnswer
from tutor.runtime.phase import SessionPhase
from tutor.runtime.store import SessionRows

T = TypeVar("T")
db = database_sync_to_async

# Work on a learner's audio (fluency measures, the span worth keeping) costs about 40 us per second of
# audio: 0.1-0.2 ms for an answer of a few seconds, less than a thread hop, whose hand-offs of the GIL
# stalled the event loop that relays every learner's audio (six executor threads waking ~240 times a
# second each at 200 learners). Single runs at 200: tutor audio p50 +83 -> +32 ms added, memory 0.87 ->
# 0.48 MiB per session; in a ladder the difference was within run-to-run variance (docs/benchmarks.md,
# "what this round's runs say"). Up to this much audio (at most ~1.2 ms of loop time) on the loop;
# longer audio (up to answers.MAX_AUDIO_MS) goes to a thread.
INLINE_AUDIO_MS = 30_000


async def audio_work(audio: bytes, func: Callable[..., T], *args) -> T:
    """`func(*args)`, CPU work on `audio`: on the event loop up to INLINE_AUDIO_MS, else in a thread."""
    if len(audio) <= INLINE_AUDIO_MS * BYTES_PER_MS:
        return func(*args)
    return await asyncio.to_thread(func, *args)


class AnswerJudge:
    def __init__(
        self,
        *,
        answers: AnswerCollector,
        placement: Placement,
        transcript: Transcript,
        rows: SessionRows,
        phase: SessionPhase,
        rater: Rater,
        target_language: str,
        step_timeout: float,
        learner: LearnerPort,
        spawn: Callable[[Coroutine, str], asyncio.Task],
        log: BoundLogger,
        on_judged: Callable[[PlacementUpdate], Awaitable[None]],
        on_finished: Callable[[], Awaitable[None]] | None = None,
    ):
        self.answers = answers
        self.placement = placement
        self.transcript = transcript
        self.rows = rows
        self.phase = phase
        self.rater = rater
        self.target_language = target_language
        self.step_timeout = step_timeout
        self.learner = learner
        self.spawn = spawn
        self.log = log
        self.on_judged = on_judged  # the placement moved: the level is shown, the tutor follows it
        self.on_finished = on_finished  # the placement is over: the assessment begins
        self._rating = asyncio.Lock()  # one answer judged at a time, in order
        self._answer_rows = asyncio.Lock()  # one Turn row per answer, however its fragments interleave

    async def show(self, answer: OpenAnswer) -> None:
        """An answer began or grew by a fragment: the learner's transcript and its Turn row follow."""
        async with self._answer_rows:
            fluency = None
            if answer is self.answers.current and answer.has_spoken:  # still open: its audio so far
                audio = self.answers.audio_so_far()
                fluency = await audio_work(audio, measure, audio)
            elif answer is not self.answers.current:  # closed: measured once, words from its transcript
                fluency = await audio_work(answer.audio, answer.fluency)
            measures = fluency.as_dict() if fluency else {}
            utterance = self.transcript.set_answer(answer.answer_id, answer.text, answer.level, answer.mode, measures)
            if utterance is None:
                return
            if answer.turn_id is None:
                answer.turn_id = await db(services.record_turn)(
                    self.rows.session_id, LEARNER, utterance.text, answer.answer_id, answer.level, answer.mode, measures
                )
            else:
                await db(services.update_answer)(answer.turn_id, utterance.text, answer.mode, measures)
        spoken_ms = fluency.duration_ms if fluency is not None and not utterance.text else None
        await self.learner.send_event(
            wire.transcript(LEARNER, answer.answer_id, utterance.text, final=True, mode=answer.mode, spoken_ms=spoken_ms)
        )

    async def tutor_said(self, role: str, item_id: str, text: str) -> None:
        """The tutor's (or the narrator's) words: in the transcript and a Turn row; a tutor's line is the
        question the next answer replies to."""
        utterance = self.transcript.add(role, text, item_id, self.placement.current_level)
        if utterance is None:
            return
        await db(services.record_turn)(self.rows.session_id, role, utterance.text, item_id, utterance.level)
        if role == TUTOR:
            self.answers.tutor_asked(self.placement.current_level, utterance.text)

    def _close(self) -> OpenAnswer | None:
        """Close the answer in progress: returned if there is anything in it to judge."""
        answer = self.answers.close()
        return answer if answer is not None and answer.fragments else None

    async def close(self, *, then_assess: bool = True) -> None:
        """Close the answer in progress and judge it now (the tutor's record_probe; the placement
        ending early, which begins the assessment itself: `then_assess=False`)."""
        answer = self._close()
        if answer is not None:
            await self.judge(answer, then_assess)

    def close_soon(self) -> None:
        """Close the answer in progress and judge it in an owned task (the tutor's reply ended: from
        the upstream reader, which never waits for the rater)."""
        answer = self._close()
        if answer is not None:
            self.spawn(self.judge(answer), "rating")

    async def settled(self) -> None:
        """Return once the answers already closed are judged (the level is then final)."""
        async with self._rating:
            pass

    async def judge(self, answer: OpenAnswer, then_assess: bool = True) -> None:
        """Rate one answer, exactly once; placement follows the judgement."""
        async with self._rating:
            if self.placement.finished or not self.phase.now.placing:
                return
            try:
                async with asyncio.timeout(self.step_timeout):
                    await answer.transcribed.wait()  # its words, or that there are none
            except TimeoutError:
                self.log.info("answer judged without its transcription", extra={"answer_id": answer.answer_id})
            await audio_work(answer.audio, answer.fluency)  # measured once; kept by the answer
            judgement = await self.rater.rate(answer.for_rater(self.target_language))
            update = self.placement.record(judgement.level, judgement.outcome, judgement.evidence, judgement.rater)
            await self._store(answer, judgement)
            self.transcript.judge(self.placement.probes[-1])  # beside the answer it judges, for the grader
            self.log.info(
                "answer judged",
                extra={"answer_id": answer.answer_id, "level": judgement.level, "outcome": judgement.outcome,
                       "rater": judgement.rater, "mode": judgement.mode, "current": update.current_level,
                       "tutor_outcome": answer.opinion.outcome if answer.opinion else None},
            )
            await self.on_judged(update)
        if update.finished and then_assess and self.on_finished is not None:
            await self.on_finished()

    async def _store(self, answer: OpenAnswer, judgement) -> None:
        """The answer's final text, fluency and recording, and the judgement beside the tutor's opinion."""
        fluency = answer.fluency()
        measures = fluency.as_dict() if fluency else {}
        utterance = self.transcript.set_answer(answer.answer_id, answer.text, answer.level, answer.mode, measures)
        new_turn = final = None
        if answer.turn_id is None and utterance is not None:
            new_turn = {"role": LEARNER, "text": utterance.text, "item_id": answer.answer_id, "level": answer.level,
                        "mode": answer.mode, "fluency": measures}
        elif answer.turn_id is not None and answer.has_spoken:  # a written answer's row is already final
            final = {"text": answer.text, "mode": answer.mode, "fluency": measures}
        span = answer.speech_span() if answer.has_spoken else b""  # found with its measures (`judge`)
        answer.release_audio()
        answer.turn_id = await db(services.store_judged_answer)(
            self.rows.session_id, answer.turn_id, judgement, answer.opinion, new_turn=new_turn, final=final, audio=span
        )
