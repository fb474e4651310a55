"""A placement outlives its connection (issue 26, DESIGN section 3b).

The stored rules (assessments.reconnection): only the session's own learner takes it back, within
PARLA_RESUME_SECONDS, one process at a time; past the window the recovery sweep ends it as leaving does.
Over a real Daphne server: a learner whose TCP connection is cut for 3 s mid-placement reconnects and
continues the same placement, its ladder intact, to its level; another learner asking for that
session is refused and learns nothing; a socket that drops during the handover gets its assessment
as text on reconnecting.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from assessments import leases, reconnection, services
from assessments.grading import RulesGrader
from assessments.models import Assessment, Probe, TutorSession, Turn
from assessments.recovery import sweep
from tutor.tests.live import ThreadedSimulator, daphne_server
from tutor.tests.resume_support import placement
from tutor.tests.test_end_to_end import login_cookie, next_json, tutor_socket

pytestmark = pytest.mark.django_db(transaction=True)
RESUME = {"PARLA_RESUME_SECONDS": "120"}


@pytest.fixture(scope="module")
def simulator():
    with ThreadedSimulator(pace=0.0, seed=11, audio_ms_per_response=300) as sim:
        yield sim


def open_session(learner, *, detached_ago: float | None = 5, served_by: str = "", probes=()) -> TutorSession:
    session = TutorSession.objects.create(
        learner=learner, upstream="simulator", model="sim", target_language="es", served_by=served_by,
        heartbeat_at=timezone.now(),
        detached_at=None if detached_ago is None else timezone.now() - timedelta(seconds=detached_ago),
    )
    for level, outcome in probes:
        turn = Turn.objects.create(session=session, role="learner", text="Hola, me llamo Ana.", level=level, mode="written")
        Probe.objects.create(session=session, turn=turn, level=level, outcome=outcome, rater="offline")
    return session


async def test_only_what_a_connections_own_claim_took_is_its_to_let_go(make_user, monkeypatch, settings):
    """A resume that stops lets go of a session only if its own claim took it (DetachWaits.claimed):
    a session this process's other connection still serves names this process too. A claim cut short
    by the connection's cancellation is recorded all the same, once the database thread has done it."""
    import time

    from channels.db import database_sync_to_async as db

    from tutor.runtime import resumption

    settings.PARLA_RESUME_SECONDS = 120
    monkeypatch.setattr(resumption, "DETACH_WAIT_SECONDS", 0.05)
    names = ("waiting-for-me", "served-here", "cut-claim")
    learners = [await db(lambda n=n: make_user(n, learner=True).learner)() for n in names]
    detached = await db(open_session)(learners[0])
    served = await db(open_session)(learners[1], detached_ago=None, served_by=services.process_id())
    slow = await db(open_session)(learners[2])

    waits = resumption.DetachWaits()
    assert (await waits.take(learners[0].pk, detached.pk, "me")).outcome == reconnection.RESUMED
    refused = await waits.take(learners[1].pk, served.pk, "me")  # nobody here lets go within the wait
    assert refused.outcome == "resume_unknown" and waits.claimed == {detached.pk}

    claim = reconnection.claim

    def slow_claim(*args):
        time.sleep(0.3)
        return claim(*args)

    monkeypatch.setattr(reconnection, "claim", slow_claim)
    taking = asyncio.create_task(waits.take(learners[2].pk, slow.pk, "me"))
    await asyncio.sleep(0.05)  # the claim is in the database thread
    taking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taking
    assert waits.claimed == {detached.pk, slow.pk}


@pytest.mark.parametrize("refusal", [503, 401])
async def test_a_resumed_placement_whose_tutor_cannot_start_keeps_the_level_its_answers_earned(
    make_user, settings, session_cookie_headers, refusal
):
    """The page reconnected, the session was claimed and rebuilt, and the upstream refused the new
    tutor session (busy, or the key revoked meanwhile). Its stored answers sustained A1 twice: that is
    evidence, so the learner gets "at least A1" (as text: no tutor to speak it), not "not rated"."""
    from channels.db import database_sync_to_async as db
    from channels.testing import WebsocketCommunicator

    from config.asgi import application
    from tutor.testing.realtime_client import start_simulator

    settings.PARLA_RESUME_SECONDS = 120
    user = await db(make_user)(f"refused-{refusal}", learner=True)
    session = await db(open_session)(user.learner, probes=[("A1", "sustained"), ("A1", "sustained"), ("A2", "breakdown")])
    headers = await db(session_cookie_headers)(user)
    async with start_simulator(refuse_upgrade=refusal) as sim:
        settings.PARLA_REALTIME_URL = sim.url
        communicator = WebsocketCommunicator(application, "/ws/tutor/", headers=headers)
        assert (await communicator.connect())[0]
        try:
            assert (await communicator.receive_json_from())["state"] == "ready"
            await communicator.send_json_to({"type": "session.resume", "session_id": session.pk})
            events = []
            async with asyncio.timeout(20):
                while not (events and events[-1] == {"type": "state", "state": "ended"}):
                    output = await communicator.receive_output(timeout=20)
                    if output.get("text"):
                        events.append(event := json.loads(output["text"]))
                        if event["type"] == "playback.flush":  # as the page answers it: nothing plays
                            await communicator.send_json_to({"type": "playback.flushed", "request_id": event["request_id"],
                                                             "played_ms": 0})
        finally:
            await communicator.disconnect()
    errors = [e["code"] for e in events if e["type"] == "error"]
    assert errors == ["upstream_busy" if refusal == 503 else "upstream_auth", "summary_unavailable"], errors
    cards = [e for e in events if e["type"] == "assessment"]
    assert cards and all(c["level"] == "A1" and c["partial"] and c["status"] != "not_rated" for c in cards), cards
    assert cards[-1]["summary"]  # the summary, shown as text
    ended = await db(TutorSession.objects.get)(pk=session.pk)
    assert ended.ended_at is not None and ended.detached_at is None
    kept = await db(Assessment.objects.get)(session_id=session.pk)
    assert kept.level == "A1" and kept.partial and kept.status != Assessment.Status.NOT_RATED


# --- the stored rules -------------------------------------------------------------------------------------


async def test_a_resume_whose_socket_closes_before_the_session_is_served_leaves_it_resumable(
    make_user, settings, session_cookie_headers, monkeypatch
):
    """The page reconnected and sent `session.resume`; this process claimed the session, and the socket
    closed before a runtime served it (a phone losing its network again). Claimed and served by
    nobody, the session would stay open as long as this process lives: no resume could take it (its
    process is alive) and no sweep would end it. It is detached again instead."""
    from channels.db import database_sync_to_async as db
    from channels.testing import WebsocketCommunicator

    from config.asgi import application
    from tutor.runtime import resumption

    settings.PARLA_RESUME_SECONDS = 120
    user = await db(make_user)("cut-again", learner=True)
    session = await db(open_session)(user.learner, probes=[("A1", "sustained")])
    headers = await db(session_cookie_headers)(user)
    claimed = asyncio.Event()

    async def rebuilding_forever(session_id, config):  # the claim is done; the rebuild never ends
        claimed.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(resumption, "load", rebuilding_forever)
    communicator = WebsocketCommunicator(application, "/ws/tutor/", headers=headers)
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from())["state"] == "ready"
    await communicator.send_json_to({"type": "session.resume", "session_id": session.pk})
    await asyncio.wait_for(claimed.wait(), 10)
    held = await db(TutorSession.objects.get)(pk=session.pk)
    assert held.served_by == services.process_id() and held.detached_at is None  # claimed here
    await communicator.disconnect()

    left = await db(TutorSession.objects.get)(pk=session.pk)
    assert left.ended_at is None and left.detached_at is not None and left.served_by == ""
    claim = await db(reconnection.claim)(session.pk, user.learner.pk, "other:1:x")
    assert claim.outcome == reconnection.RESUMED  # the learner's next reconnection takes it, on any process



def test_only_its_learner_takes_a_detached_session_back_within_the_window(make_user, settings):
    settings.PARLA_RESUME_SECONDS = 120
    ana, bob = make_user("ana-r", learner=True).learner, make_user("bob-r", learner=True).learner
    session = open_session(ana)
    assert reconnection.claim(session.pk, bob.pk, "other:1:x").outcome == "resume_unknown"  # nothing says whose
    assert reconnection.claim(session.pk + 1000, ana.pk, "other:1:x").outcome == "resume_unknown"
    claim = reconnection.claim(session.pk, ana.pk, "here:1:x")
    assert claim.outcome == reconnection.RESUMED
    session.refresh_from_db()
    assert session.detached_at is None and session.served_by == "here:1:x"
    # Taken: a second claim (another process, or the same page twice) finds it served by a live process.
    leases.hold()
    TutorSession.objects.filter(pk=session.pk).update(served_by=services.process_id())
    assert reconnection.claim(session.pk, ana.pk, "there:2:y").outcome == reconnection.ATTACHED


def test_a_session_detached_too_long_ago_or_ended_is_not_resumed(make_user, settings):
    settings.PARLA_RESUME_SECONDS = 120
    ana = make_user("ana-late", learner=True).learner
    late = open_session(ana, detached_ago=121)
    assert reconnection.claim(late.pk, ana.pk, "here:1:x").outcome == "resume_expired"
    ended = open_session(ana)
    services.end_session(ended.pk, "learner_stopped")
    assert reconnection.claim(ended.pk, ana.pk, "here:1:x").outcome == "resume_ended"


def test_a_session_of_a_dead_process_is_taken_over(make_user, settings):
    settings.PARLA_RESUME_SECONDS = 120
    ana = make_user("ana-dead", learner=True).learner
    orphan = open_session(ana, detached_ago=None, served_by="gone:99:dead")  # never detached: its process died
    assert reconnection.claim(orphan.pk, ana.pk, "here:1:x").outcome == reconnection.RESUMED


def test_the_sweep_ends_a_session_whose_learner_did_not_come_back(make_user, settings):
    settings.PARLA_RESUME_SECONDS = 120
    ana, bob, eve = (make_user(n, learner=True).learner for n in ("ana-gone", "bob-gone", "eve-waiting"))
    rated = open_session(ana, detached_ago=121, probes=[("A1", "sustained"), ("A1", "sustained"), ("A2", "breakdown")])
    thin = open_session(bob, detached_ago=121, probes=[("A1", "sustained")])
    waiting = open_session(eve, detached_ago=100, probes=[("A1", "sustained")])
    asyncio.run(sweep(RulesGrader(), claimer="sweeper:1:x"))
    for row in (rated, thin, waiting):
        row.refresh_from_db()
    assert rated.end_reason == thin.end_reason == "learner_left"
    kept = Assessment.objects.get(session=rated)
    assert kept.level == "A1" and kept.partial and kept.status == Assessment.Status.DELIVERY_FAILED
    assert kept.failure_reason == reconnection.LEFT_REASON and kept.summary
    unrated = Assessment.objects.get(session=thin)
    assert unrated.status == Assessment.Status.NOT_RATED and "did not come back" in unrated.failure_reason
    # Within the window, and its heartbeat long stale: left alone for its learner.
    TutorSession.objects.filter(pk=waiting.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    asyncio.run(sweep(RulesGrader(), claimer="sweeper:1:x"))
    waiting.refresh_from_db()
    assert waiting.ended_at is None and not Assessment.objects.filter(session=waiting).exists()


# --- over a real server ---------------------------------------------------------------------------------------


def test_a_socket_cut_for_3_s_continues_the_same_placement_with_its_ladder(simulator, make_user):
    simulator.set_knobs(true_level="A2")
    user = make_user("commuter", learner=True)
    cookie = login_cookie(user)

    def cut_mid_placement(journey) -> bool:
        # The initial ladder, then one per judged answer: A1 sustained, and one answer judged at A2;
        # cut while the learner thinks about the next question (no answer of theirs waits to be judged:
        # one would be judged as the socket drops, and the ladder move on from what the page showed).
        return (journey.level_events >= 4 and journey.answers == journey.level_events - 1
                and journey.of_type("state")[-1]["state"] == "listening")

    with daphne_server(realtime_url=simulator.url, redis_url=None, extra_env=RESUME) as base_url:
        journey = asyncio.run(placement(base_url, cookie, level="A2", cut=cut_mid_placement))
        log = base_url.log_path.read_text()

    assert journey.connections == 2 and journey.resumed == 1 and journey.close_codes == ["cut"]
    assert TutorSession.objects.filter(learner__user=user).count() == 1  # the same placement, not a new one
    session = TutorSession.objects.get(learner__user=user)
    assert session.pk == journey.session_id and session.end_reason in ("ceiling", "top")
    assert journey.ladder_after_resume == journey.ladder_at_cut  # the ladder intact
    assert journey.ladder_at_cut["A1"] == "sustained" and journey.ladder_at_cut["A2"] == "current"
    # The judgements from before the cut are the placement's first, and it went on after it.
    probes = list(session.probes.order_by("created_at", "pk").values_list("level", "outcome", "created_at"))
    before = [p[:2] for p in probes if p[2] < journey.cut_at]
    assert before == [("A1", "sustained"), ("A1", "sustained"), ("A2", "sustained")], before
    assert len(probes) > len(before)
    card = journey.of_type("assessment")[-1]
    assert card["status"] == "delivered" and card["level"] == "A2" and not card["partial"]
    assert journey.of_type("error") == []
    assessment = Assessment.objects.get(session=session)
    assert assessment.level == "A2" and assessment.status == Assessment.Status.DELIVERED
    assert "session detached: awaiting the learner" in log and "session resumed" in log
    assert simulator.wait_all_closed(5) == 0


def test_a_socket_cut_as_an_answer_was_sent_gets_the_tutors_reply_again_and_goes_on(simulator, make_user):
    """Cut just after the learner typed an answer, before the tutor's reply to it was heard: the answer
    is judged as the socket drops, the reply is asked for again on the new upstream session, and the
    learner's turn follows it (a rebuilt session starts `connecting`: it must move on from there)."""
    # The upstream 300 ms away: the cut (at the first event after the answer, the learner's own words
    # echoed at once) lands before the tutor's reply to it is generated, every time.
    simulator.set_knobs(true_level="A2", latency_ms=300)
    user = make_user("typist", learner=True)
    cookie = login_cookie(user)

    def cut_as_an_answer_waits(journey) -> bool:
        return journey.level_events >= 3 and journey.answers >= journey.level_events

    try:
        with daphne_server(realtime_url=simulator.url, redis_url=None, extra_env=RESUME) as base_url:
            journey = asyncio.run(placement(base_url, cookie, level="A2", cut=cut_as_an_answer_waits, timeout=90))
            log = base_url.log_path.read_text()
    finally:
        simulator.set_knobs(latency_ms=0)

    assert journey.connections == 2 and journey.resumed == 1 and journey.close_codes == ["cut"]
    session = TutorSession.objects.get(learner__user=user)
    assert session.pk == journey.session_id and session.end_reason in ("ceiling", "top")
    assert 'reason="resume"' in log  # the reply to the answer was asked for again
    resumed_at = next(i for i, e in enumerate(journey.events) if e["type"] == "session" and e["resumed"])
    states = [e["state"] for e in journey.events[resumed_at:] if e["type"] == "state"]
    assert states[:2] == ["tutor_speaking", "listening"], states  # the tutor's reply, then the learner's turn
    card = journey.of_type("assessment")[-1]
    assert card["status"] == "delivered" and card["level"] == "A2" and not card["partial"]
    assert journey.of_type("error") == []
    assert simulator.wait_all_closed(5) == 0


def test_another_learner_cannot_resume_it_and_learns_nothing(simulator, make_user):
    simulator.set_knobs(true_level="A1")
    owner = login_cookie(make_user("owner", learner=True))
    intruder = login_cookie(make_user("intruder", learner=True))

    async def scenario(base_url):
        async with tutor_socket(base_url, owner) as ws:
            assert (await next_json(ws))["state"] == "ready"
            await ws.send(json.dumps({"type": "session.start"}))
            while (event := await next_json(ws))["type"] != "session":
                pass
            session_id = event["session_id"]
            while (await next_json(ws)) != {"type": "state", "state": "listening"}:
                pass
        # The owner's socket dropped: the session is detached. Another learner asks for it by its id.
        async with tutor_socket(base_url, intruder) as ws:
            assert (await next_json(ws))["state"] == "ready"
            await ws.send(json.dumps({"type": "session.resume", "session_id": session_id}))
            refused = await next_json(ws)
            await ws.send(json.dumps({"type": "answer.text", "text": "Hola"}))
            after = await next_json(ws)
        return session_id, refused, after

    with daphne_server(realtime_url=simulator.url, redis_url=None, extra_env=RESUME) as base_url:
        session_id, refused, after = asyncio.run(scenario(base_url))
    assert refused == {"type": "error", "code": "resume_unknown", "message": reconnection.REFUSED["resume_unknown"]}
    assert after["code"] == "not_started"  # nothing of the owner's session reached the intruder
    session = TutorSession.objects.get(pk=session_id)
    assert session.ended_at is None and session.detached_at is not None  # still the owner's to resume


def test_a_socket_cut_during_the_handover_gets_its_assessment_as_text_on_reconnecting(simulator, make_user):
    simulator.set_knobs(true_level="A1")
    user = make_user("handed-over", learner=True)

    def cut_in_the_handover(journey) -> bool:
        return journey.events[-1] == {"type": "state", "state": "assessing"}

    with daphne_server(realtime_url=simulator.url, redis_url=None, extra_env=RESUME) as base_url:
        journey = asyncio.run(placement(base_url, login_cookie(user), level="A1", cut=cut_in_the_handover))

    assert journey.connections == 2 and journey.resumed == 1
    after = journey.events[journey.events.index({"type": "state", "state": "assessing"}) + 1:]
    kinds = [e["type"] for e in after]
    assert kinds[0] == "state" and kinds[1] == "session"  # ready, then the session shown again
    assert "transcript" in kinds and kinds[-3:] == ["level", "assessment", "state"]
    card = after[-2]
    assessment = Assessment.objects.get(learner__user=user)
    assert card["id"] == assessment.pk and card["level"] == assessment.level == "A1"
    assert card["status"] == assessment.status == Assessment.Status.DELIVERED
    assert assessment.failure_reason == reconnection.DELIVERED_NOTE and assessment.summary
    # The conversation shown is the stored one, nothing more.
    shown = [(e["role"], e["text"]) for e in after if e["type"] == "transcript"]
    assert shown == [(t.role, t.text) for t in Turn.objects.filter(session=assessment.session)]
    assert simulator.wait_all_closed(5) == 0
