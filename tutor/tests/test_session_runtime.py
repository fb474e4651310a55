"""TutorSessionRuntime without a browser: a learner who leaves while the assessment is being graded."""

import asyncio
import dataclasses

import pytest
from asgiref.sync import sync_to_async

from assessments.grading import RulesGrader
from assessments.testing import TimedGrader
from assessments.models import Assessment, TutorSession
from tutor.persona import SILENCE_MS_BEGINNER
from tutor.realtime.simulator.input import SEMANTIC_SILENCE_MS
from tutor.testing.loopback import MemoryLearner
from tutor.realtime import clock
from tutor.realtime.clock import Clock
from tutor.runtime.phase import Phase, SessionPhase
from tutor.runtime.session import SessionConfig, TutorSessionRuntime
from tutor.testing.realtime_client import start_simulator
from tutor.upstream import Upstream

pytestmark = pytest.mark.django_db(transaction=True)


async def until(predicate, timeout=15.0):
    """Poll the in-memory learner (a test may wait on wall time; protocol code may not)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_learner_leaving_mid_grading_keeps_the_assessment_and_leaves_nothing_running(learner_user):
    learner_profile = await sync_to_async(lambda: learner_user.learner)()
    config = dataclasses.replace(
        await sync_to_async(SessionConfig.for_learner)(learner_profile), grader=TimedGrader(30.0, RulesGrader())
    )
    async with start_simulator(true_level="A1") as sim:
        learner = MemoryLearner()
        upstream = Upstream(sim.url, None, "gpt-realtime", "simulator")
        runtime = TutorSessionRuntime(learner, learner_profile.pk, config, upstream=upstream)
        before = set(asyncio.all_tasks())
        runtime.launch()
        answered = 0
        while runtime.assessment_id is None:
            await until(lambda: sum(e["type"] == "audio.end" for e in learner.events) > answered
                        or runtime.assessment_id is not None)
            if runtime.assessment_id is None:
                answered += 1
                await runtime.answer_text("Hola, me llamo Ana y vivo en Madrid.")
        await until(lambda: any(e["type"] == "assessing" for e in learner.events))
        assert runtime.outcome.delivery is not None and runtime._tasks  # grading: the delivery task is running

        await runtime.close("learner_left")  # the socket is gone while the grader still works
        await learner.close()  # and with it the browser's playback

        leftover = [t for t in asyncio.all_tasks() - before if not t.done() and "simulator" not in t.get_name()]
        assert [t.get_name() for t in leftover] == []
        assert runtime._tasks == set()
        await until(lambda: len(sim.connections) == 0, timeout=5)  # tutor and narrator sessions closed

    assessment = await sync_to_async(Assessment.objects.get)(pk=runtime.assessment_id)
    session = await sync_to_async(TutorSession.objects.get)(pk=runtime.session_id)
    assert assessment.status == Assessment.Status.DELIVERY_FAILED
    assert "learner disconnected" in assessment.failure_reason
    assert assessment.level == "A1" and assessment.summary and assessment.grader == "rules"
    assert session.ended_at is not None and session.end_reason == "learner_left"


async def test_a_resumed_session_neither_greets_again_nor_probes_an_answer_twice(learner_user):
    """Upstream sessions expire every 1.5 s; each resume replays the conversation as text."""
    from tutor.realtime.simulator.persona import GREETINGS

    learner_profile = await sync_to_async(lambda: learner_user.learner)()
    config = await sync_to_async(SessionConfig.for_learner)(learner_profile)
    async with start_simulator(true_level="B1", session_max_seconds=1.5) as sim:
        learner = MemoryLearner()
        upstream = Upstream(sim.url, None, "gpt-realtime", "simulator")
        runtime = TutorSessionRuntime(learner, learner_profile.pk, config, upstream=upstream)
        runtime.launch()
        await until(lambda: runtime.connection.current is not None)
        first = runtime.connection.current
        answered = 0
        while runtime.assessment_id is None:
            await until(lambda: sum(e["type"] == "audio.end" for e in learner.events) > answered
                        or runtime.assessment_id is not None, timeout=30)
            if runtime.assessment_id is None:
                answered = sum(e["type"] == "audio.end" for e in learner.events)
                await asyncio.sleep(0.4)  # the learner thinks; sessions expire meanwhile
                if runtime.assessment_id is None:
                    await runtime.answer_text("Creo que sí, porque me gusta mucho leer y viajar.")
        await runtime.close("learner_left")

    assert runtime.connection.resumes >= 1
    # One connection across the resumes, a new upstream session under it; the parts hold the connection.
    assert runtime.connection.current is not first
    assert runtime.client is runtime.connection and runtime.responses.connection is runtime.connection
    assert runtime.outcome.delivery.client is runtime.connection
    tutor_lines = runtime.transcript.texts("tutor")
    assert sum(line.startswith(GREETINGS["es"]) for line in tutor_lines) == 1
    assert len(runtime.placement.probes) == len(runtime.transcript.texts("learner"))


async def test_the_learner_is_heard_when_they_speak_while_the_upstream_session_is_resumed(learner_user):
    """Audio that arrives while the expired session is being replaced goes to the new session."""
    import numpy as np

    learner_profile = await sync_to_async(lambda: learner_user.learner)()
    config = await sync_to_async(SessionConfig.for_learner)(learner_profile)
    async with start_simulator(true_level="A2", session_max_seconds=1.5) as sim:
        learner = MemoryLearner()
        upstream = Upstream(sim.url, None, "gpt-realtime-2.1", "simulator")
        runtime = TutorSessionRuntime(learner, learner_profile.pk, config, upstream=upstream)
        gate, resuming = asyncio.Event(), asyncio.Event()
        connection = runtime.connection
        connect = connection.connect

        async def held_connect():
            if connection.current is not None:  # a resume (not the first connection): hold it open
                resuming.set()
                await gate.wait()
            await connect()

        connection.connect = held_connect
        runtime.launch()
        await until(lambda: any(e == {"type": "state", "state": "listening"} for e in learner.events))
        await asyncio.wait_for(resuming.wait(), 10)  # the session expired; its replacement is opening
        t = np.arange(24 * 900) / 24000
        voiced = (0.45 * np.sin(2 * np.pi * 170 * t) * 22000).astype("<i2").tobytes()
        # Then a silence longer than the session's turn detection waits (server VAD's 1.2 s for
        # beginners, the simulator's 2 s for semantic VAD at low eagerness): the turn ends, is committed.
        silence_ms = max(SILENCE_MS_BEGINNER, SEMANTIC_SILENCE_MS["low"]) + 500
        pcm = voiced + bytes(48 * silence_ms)
        for start in range(0, len(pcm), 4800):
            await runtime.learner_audio(pcm[start : start + 4800])
        gate.set()
        await until(lambda: any(e["type"] == "transcript" and e["role"] == "learner" and e["item_id"]
                                for e in learner.events), timeout=10)
        await runtime.close("learner_left")
    assert runtime.connection.resumes >= 1


async def test_one_heartbeat_beats_for_all_sessions_of_the_process_and_stops_with_the_last(settings, make_user):
    """Two running sessions share the process's one heartbeat task; their rows both stay fresh, and
    once both have ended no heartbeat task is left."""
    from tutor.recovery import heartbeats

    settings.PARLA_HEARTBEAT_SECONDS = 0.2
    profiles = [await sync_to_async(lambda n=n: make_user(n, learner=True).learner)() for n in ("ana", "ben")]
    async with start_simulator(true_level="A1") as sim:
        upstream = Upstream(sim.url, None, "gpt-realtime", "simulator")
        runtimes = []
        for profile in profiles:
            config = await sync_to_async(SessionConfig.for_learner)(profile)
            runtimes.append(TutorSessionRuntime(MemoryLearner(), profile.pk, config, upstream=upstream))
            runtimes[-1].launch()
        await until(lambda: all(r.session_id is not None for r in runtimes))
        beating = [t for t in asyncio.all_tasks() if t.get_name() == "session-heartbeats" and not t.done()]
        assert len(beating) == 1 and heartbeats.sessions >= {r.session_id for r in runtimes}

        ids = [r.session_id for r in runtimes]
        first = {s.pk: s.heartbeat_at for s in await sync_to_async(list)(TutorSession.objects.filter(pk__in=ids))}
        await asyncio.sleep(0.5)  # over two heartbeat periods (a test may wait on wall time)
        later = {s.pk: s.heartbeat_at for s in await sync_to_async(list)(TutorSession.objects.filter(pk__in=ids))}
        assert all(later[pk] > first[pk] for pk in ids), (first, later)

        await runtimes[0].close("learner_left")
        assert not beating[0].done()  # the other session still runs: the heartbeat goes on
        await runtimes[1].close("learner_left")
        assert beating[0].done() and heartbeats.task is None and not heartbeats.sessions & set(ids)
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "session-heartbeats" and not t.done()]


async def test_a_task_cancelled_before_it_started_leaves_no_coroutine_unawaited(learner_user):
    """The session ends the moment after it spawned a task (the scheduler's reply worker, say): the task's
    coroutine is closed with it, not left for the garbage collector to warn about."""
    import inspect

    learner_profile = await sync_to_async(lambda: learner_user.learner)()
    config = await sync_to_async(SessionConfig.for_learner)(learner_profile)
    runtime = TutorSessionRuntime(MemoryLearner(), learner_profile.pk, config, upstream=None)

    async def work():
        await asyncio.sleep(0)

    never_started, finished = work(), work()
    runtime._spawn(finished, "finished")
    await asyncio.sleep(0.01)
    runtime._spawn(never_started, "cancelled")
    await runtime.tasks.cancel_all()
    assert runtime._tasks == set()
    assert inspect.getcoroutinestate(finished) == inspect.CORO_CLOSED
    assert inspect.getcoroutinestate(never_started) == inspect.CORO_CLOSED


async def test_the_time_cap_is_measured_on_the_session_clock(learner_user):
    """The session's time budget runs on the session clock (tutor.realtime.clock): on a clock 40 times
    as fast as the wall, a 4 s cap ends the placement (not rated: nothing was answered) in a tenth of a
    second of wall time."""
    learner_profile = await sync_to_async(lambda: learner_user.learner)()
    config = dataclasses.replace(await sync_to_async(SessionConfig.for_learner)(learner_profile), max_seconds=4.0)
    loop = asyncio.get_running_loop()
    async with start_simulator(true_level="A1", pace=0) as sim:
        with clock.installed(Clock(speed=40)):
            learner = MemoryLearner()
            upstream = Upstream(sim.url, None, "gpt-realtime", "simulator")
            runtime = TutorSessionRuntime(learner, learner_profile.pk, config, upstream=upstream)
            began = loop.time()
            runtime.launch()
            await until(lambda: runtime.state == "ended", timeout=10)  # shown once the row has ended
            took = loop.time() - began
            await runtime.close("learner_left")
            await learner.close()
    session = await sync_to_async(TutorSession.objects.get)(pk=runtime.session_id)
    assert session.end_reason == "time_cap"
    assert runtime.outcome.not_rated
    assert took < 2.0  # not the 4 s of the cap in wall time


def test_the_session_phase_only_moves_forward_and_says_what_it_allows():
    phase = SessionPhase()
    assert phase.now is Phase.CONNECTING and phase.now.placing and not phase.now.takes_audio
    assert phase.to(Phase.CONVERSING) is Phase.CONNECTING
    assert phase.now.placing and phase.now.takes_audio
    phase.to(Phase.ASSESSING)  # the assessment row: the tutor says no more, the learner's audio still counts
    assert not phase.now.placing and phase.now.takes_audio and not phase.now.over
    phase.to(Phase.DELIVERING)  # the handover froze the tutor
    assert not phase.now.takes_audio
    with pytest.raises(RuntimeError, match="from delivering to conversing"):
        phase.to(Phase.CONVERSING)
    phase.to(Phase.DELIVERING)  # staying is no move
    phase.to(Phase.CLOSED)  # the socket may close in any phase
    assert phase.now.over and not phase.now.placing
