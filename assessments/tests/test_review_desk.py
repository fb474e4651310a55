"""The teachers' review desk, driven as a teacher would: Django's test client logged in as a teacher."""

import csv
import io
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from assessments.models import Assessment, Learner, Probe, TutorSession, Turn
from assessments.tests.factories import make_session_with_assessment

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:assessments_assessment_changelist")
AGREEMENT = reverse("admin:assessments_assessment_agreement")


@pytest.fixture
def teacher_client(client, teacher_user):
    client.force_login(teacher_user)
    return client


@pytest.fixture
def make_assessment(make_user):
    """make_assessment(username, level, teacher_level="", **fields) -> Assessment of a new learner's session."""
    counter = iter(range(10_000))

    def make(username=None, level="B1", teacher_level="", *, language="es", email="", first_name="", **fields):
        user = make_user(username or f"learner{next(counter)}", email=email, first_name=first_name)
        learner = Learner.objects.create(user=user, target_language=language)
        _, assessment = make_session_with_assessment(learner, level=level)
        if teacher_level:
            fields.setdefault("reviewed_at", timezone.now())
        Assessment.objects.filter(pk=assessment.pk).update(teacher_level=teacher_level, **fields)
        assessment.refresh_from_db()
        return assessment

    return make


def listed(response):
    assert response.status_code == 200, response.status_code  # an unknown filter redirects with ?e=1
    return {a.pk for a in response.context["cl"].result_list}


# --- the list -------------------------------------------------------------------------------------


def test_list_columns_newest_first_and_counts_per_level(teacher_client, make_assessment):
    old = make_assessment("olga", "A2", created_at=timezone.now() - timedelta(days=3), language="fr")
    new = make_assessment("nina", "B1", "B2")
    response = teacher_client.get(CHANGELIST)
    assert [a.pk for a in response.context["cl"].result_list] == [new.pk, old.pk]
    html = response.content.decode()
    for text in ("French", "Spanish", "one apart", "rules", "Graded"):
        assert text in html
    assert new.created_at.astimezone(timezone.get_current_timezone()).strftime("%H:%M:%S") in html  # to the second
    counts = dict(response.context["level_counts"])
    assert (counts["A2"], counts["B1"], counts["C2"]) == (1, 1, 0)
    assert 'data-level="B1"><strong>B1</strong> 1' in html


def test_filters(teacher_client, make_assessment):
    unreviewed = make_assessment("u", "B1")
    same = make_assessment("s", "B1", "B1")
    one_apart = make_assessment("o", "A2", "B1", language="fr", partial=True)
    further = make_assessment("f", "A1", "B2", created_at=timezone.now() - timedelta(days=40))
    not_rated = make_assessment("n", "", status=Assessment.Status.NOT_RATED)
    flagged_level = make_assessment("g", "B1", grader_level="B2", created_at=timezone.now() - timedelta(days=40))
    flagged_text = make_assessment("h", "C1", grader_flag="The answers at B1 read like memorised phrases.",
                                   created_at=timezone.now() - timedelta(days=40))
    cases = {
        "grader_flag=yes": {flagged_level.pk, flagged_text.pk},
        "grader_flag=no": {unreviewed.pk, same.pk, one_apart.pk, further.pk, not_rated.pk},
        "reviewed=no": {unreviewed.pk, not_rated.pk, flagged_level.pk, flagged_text.pk},
        "reviewed=yes": {same.pk, one_apart.pk, further.pk},
        "agreement=disagree": {one_apart.pk, further.pk},
        "agreement=same": {same.pk},
        "agreement=one": {one_apart.pk},
        "agreement=further": {further.pk},
        "level__exact=A2": {one_apart.pk},
        "language=fr": {one_apart.pk},
        "status__exact=not_rated": {not_rated.pk},
        "rating=partial": {one_apart.pk},
        "rating=not_rated": {not_rated.pk},
        "rating=full": {unreviewed.pk, same.pk, further.pk, flagged_level.pk, flagged_text.pk},
        "created_at__gte=" + (timezone.now() - timedelta(days=7)).isoformat().replace("+", "%2B"): {
            unreviewed.pk, same.pk, one_apart.pk, not_rated.pk},
    }
    for query, expected in cases.items():
        assert listed(teacher_client.get(f"{CHANGELIST}?{query}")) == expected, query
    # The counts follow the filters.
    assert dict(teacher_client.get(f"{CHANGELIST}?language=fr").context["level_counts"])["A2"] == 1
    assert teacher_client.get(f"{CHANGELIST}?rating=not_rated").context["not_rated_count"] == 1


def test_search_by_learner_name_and_email(teacher_client, make_assessment):
    ana = make_assessment("ana1", first_name="Anabel", email="anabel@example.org")
    bo = make_assessment("bo", email="bo@school.example")
    assert listed(teacher_client.get(CHANGELIST, {"q": "Anabel"})) == {ana.pk}
    assert listed(teacher_client.get(CHANGELIST, {"q": "school.example"})) == {bo.pk}


def test_list_query_count_stays_flat(teacher_client, make_assessment):
    def queries(total):
        while Assessment.objects.count() < total:
            make_assessment(teacher_level="A2" if Assessment.objects.count() % 2 else "")
        with CaptureQueriesContext(connection) as captured:
            assert teacher_client.get(CHANGELIST, {"all": ""}).status_code == 200
        return len(captured)

    assert queries(5) == queries(50)


# --- one screen to review -------------------------------------------------------------------------


def test_review_screen_shows_the_reasons_criteria_and_conversation(teacher_client, make_assessment, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    from assessments.services import save_turn_audio

    assessment = make_assessment("ana", "B1")
    Assessment.objects.filter(pk=assessment.pk).update(criteria={
        "range": "B1",
        "fluency": {"level": "B2", "evidence": "talked for a minute without pausing", "confidence": 0.8},
    })
    learner_turn = assessment.session.turns.get(role=Turn.Role.LEARNER)
    save_turn_audio(learner_turn.pk, b"\x00\x01" * 2400)
    html = teacher_client.get(reverse("admin:assessments_assessment_change", args=[assessment.pk])).content.decode()
    # The ladder and each answer's judgement with its evidence.
    assert 'data-verdict="tried"' in html and "Breakdown" in html and "stalled" in html and "narrated" in html
    # The criteria as a table: both stored shapes, and the ones the grader did not assess.
    assert 'data-criterion="fluency"' in html and "talked for a minute without pausing" in html and "0.8" in html
    assert html.count("not assessed") == 3  # accuracy, interaction, coherence
    # The conversation in order, to the second, with a player for the learner's recorded answer.
    assert html.index("¿Cómo te llamas?") < html.index("Me llamo Ana.")
    assert learner_turn.created_at.astimezone(timezone.get_current_timezone()).strftime("%Y-%m-%d %H:%M:%S") in html
    assert f'<audio controls preload="none" src="{reverse("assessments:turn_audio", args=[learner_turn.pk])}"' in html
    assert html.count("<audio") == 1  # tutor turns have no recording


def test_review_save_records_who_and_when(teacher_client, teacher_user, make_assessment):
    assessment = make_assessment("ana", "B1")
    before = timezone.now()
    response = teacher_client.post(
        reverse("admin:assessments_assessment_change", args=[assessment.pk]),
        {"teacher_level": "A2", "notes": "Hesitant past tenses.", "level": "C2", "criteria": "{}"},
    )
    assert response.status_code == 302
    assessment.refresh_from_db()
    assert (assessment.teacher_level, assessment.notes, assessment.level) == ("A2", "Hesitant past tenses.", "B1")
    assert assessment.reviewed_by == teacher_user and assessment.reviewed_at >= before
    assert assessment.criteria == {"fluency": "B1", "range": "B1"}


def test_action_marks_several_reviewed_in_agreement(teacher_client, teacher_user, make_assessment):
    a, b = make_assessment(level="A2"), make_assessment(level="C1")
    untouched = make_assessment(level="B1")
    not_rated = make_assessment(level="", status=Assessment.Status.NOT_RATED)
    response = teacher_client.post(
        CHANGELIST, {"action": "mark_reviewed_in_agreement", "_selected_action": [a.pk, b.pk, not_rated.pk]}, follow=True
    )
    assert "2 assessment(s) marked as reviewed in agreement" in response.content.decode()
    for assessment, level in ((a, "A2"), (b, "C1")):
        assessment.refresh_from_db()
        assert assessment.teacher_level == level and assessment.reviewed_by == teacher_user and assessment.reviewed_at
    for assessment in (untouched, not_rated):
        assessment.refresh_from_db()
        assert assessment.reviewed_at is None and assessment.teacher_level == ""


def test_action_leaves_reviewed_assessments_as_the_teacher_left_them_and_logs_each_change(
    teacher_client, teacher_user, make_assessment
):
    from django.contrib.admin.models import LogEntry

    reviewed = make_assessment(level="B2", teacher_level="A2", notes="Hesitant.", reviewed_by=teacher_user)
    fresh = make_assessment(level="B1")
    partial = make_assessment(level="A1", partial=True)
    response = teacher_client.post(  # with filters on, as from a filtered list (joins, annotations)
        f"{CHANGELIST}?q=learner&o=3",
        {"action": "mark_reviewed_in_agreement", "_selected_action": [reviewed.pk, fresh.pk, partial.pk]},
        follow=True,
    )
    html = response.content.decode()
    assert "1 assessment(s) marked as reviewed in agreement" in html
    assert "1 already reviewed assessment(s) left as the teacher reviewed them" in html
    assert "1 partial (&quot;at least&quot;) assessment(s) left for a teacher&#x27;s level" in html
    partial.refresh_from_db()
    assert partial.teacher_level == "" and partial.reviewed_at is None
    reviewed.refresh_from_db()
    assert (reviewed.teacher_level, reviewed.notes) == ("A2", "Hesitant.")
    (entry,) = LogEntry.objects.filter(object_id=str(fresh.pk))
    assert entry.get_change_message() == "Changed teacher level from “” to “B1” (the action: agreeing with the machine's level)."
    assert not LogEntry.objects.filter(object_id=str(reviewed.pk)).exists()
    # A change by hand is logged with old and new values too.
    teacher_client.post(reverse("admin:assessments_assessment_change", args=[fresh.pk]),
                        {"teacher_level": "B2", "notes": "Argues well."})
    latest = LogEntry.objects.filter(object_id=str(fresh.pk)).latest("action_time")
    assert latest.get_change_message() == "Changed teacher level from “B1” to “B2”; notes from “” to “Argues well.”"


async def streamed(response) -> bytes:
    return b"".join([part async for part in response.streaming_content])


def test_csv_export_of_the_selected_assessments(teacher_client, teacher_user, make_assessment):
    a = make_assessment("ana", "B1", "B2", email="ana@example.org", reviewed_by=teacher_user)
    Assessment.objects.filter(pk=a.pk).update(criteria={"range": "B1", "fluency": {"level": "B2", "evidence": "x"}})
    b = make_assessment("bo", "A2", language="fr")
    response = teacher_client.post(CHANGELIST, {"action": "export_csv", "_selected_action": [a.pk, b.pk]})
    assert response["Content-Type"].startswith("text/csv")
    # A large selection is written row by row as Daphne sends it, never held whole: an async iterator.
    assert response.streaming and response.is_async
    rows = list(csv.DictReader(io.StringIO(async_to_sync(streamed)(response).decode())))
    assert [row["id"] for row in rows] == [str(b.pk), str(a.pk)]  # newest first
    ana = rows[1]
    assert (ana["learner"], ana["email"], ana["language"]) == ("ana", "ana@example.org", "es")
    assert (ana["machine_level"], ana["teacher_level"], ana["agreement"], ana["reviewed_by"]) == ("B1", "B2", "one apart", "tomas")
    assert (ana["criterion_range"], ana["criterion_fluency"], ana["criterion_accuracy"]) == ("B1", "B2", "")
    assert ana["created_at"] and ana["reviewed_at"] and ana["graded_at"] == ""
    assert rows[0]["teacher_level"] == "" and rows[0]["language"] == "fr"


# --- how far to trust the machine -----------------------------------------------------------------


def test_agreement_page_without_reviews_says_so(teacher_client, make_assessment):
    make_assessment(level="B1")  # not reviewed: not counted
    html = teacher_client.get(AGREEMENT).content.decode()
    assert "No reviewed assessments" in html and 'data-figure="kappa"' not in html


def test_agreement_page_figures_on_known_reviews(teacher_client, make_assessment):
    # Machine / teacher: B1 B1, B1 B1, A2 A2, B2 B1, A1 B2 (the last in French by another grader).
    for level, teacher in (("B1", "B1"), ("B1", "B1"), ("A2", "A2"), ("B2", "B1")):
        make_assessment(level=level, teacher_level=teacher)
    far = make_assessment(level="A1", teacher_level="B2", language="fr", grader="openai:gpt-4.1-mini")
    make_assessment(level="C1")  # not reviewed
    response = teacher_client.get(AGREEMENT)
    figures = response.context["figures"]
    # By hand: exact 3/5, adjacent 4/5. Machine indices [2,2,1,3,0], teacher [2,2,1,2,3];
    # observed sum of (m - t)^2 = 1 + 9 = 10; all 25 cross pairs: m=2 -> 0+0+1+0+1 = 2 (twice),
    # m=1 -> 1+1+0+1+4 = 7, m=3 -> 1+1+4+1+0 = 7, m=0 -> 4+4+1+4+9 = 22; total 40 over n=5 -> 8.
    # Quadratic kappa = 1 - 10 / 8 = -0.25.
    assert (figures.count, figures.exact, figures.adjacent) == (5, 3 / 5, 4 / 5)
    assert figures.kappa == pytest.approx(-0.25)
    assert figures.matrix[2][2] == 2 and figures.matrix[3][2] == 1 and figures.matrix[0][3] == 1
    html = response.content.decode()
    assert 'data-figure="exact">60%' in html and 'data-figure="adjacent">80%' in html and "-0.25" in html
    largest = response.context["largest"]
    assert [(a.pk, apart) for a, apart in largest][0] == (far.pk, 3) and len(largest) == 2
    # Filters: by language, by grader, by date.
    assert teacher_client.get(AGREEMENT, {"language": "fr"}).context["figures"].count == 1
    assert teacher_client.get(AGREEMENT, {"grader": "rules"}).context["figures"].exact == 3 / 4
    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()
    assert teacher_client.get(AGREEMENT, {"since": tomorrow}).context["figures"].count == 0


def test_admin_index_links_the_desk_the_live_view_and_the_agreement(teacher_client):
    html = teacher_client.get(reverse("admin:index")).content.decode()
    for url in (reverse("tutor:teacher_live"), AGREEMENT, f"{CHANGELIST}?reviewed=no"):
        assert f'href="{url}"' in html


# --- roles ----------------------------------------------------------------------------------------


def test_teacher_is_refused_what_is_not_theirs(teacher_client, make_assessment):
    assessment = make_assessment("ana")
    turn = assessment.session.turns.first()
    for url in (
        reverse("admin:assessments_assessment_delete", args=[assessment.pk]),
        reverse("admin:auth_user_changelist"),
        reverse("admin:auth_group_changelist"),
        reverse("admin:assessments_turn_delete", args=[turn.pk]),
    ):
        response = teacher_client.get(url)
        assert response.status_code == 403, url
        assert "This page is not for this account" in response.content.decode()  # Parla's 403 page
    # Transcripts are read-only: a forged change is refused.
    response = teacher_client.post(reverse("admin:assessments_turn_change", args=[turn.pk]), {"text": "forged"})
    assert response.status_code == 403
    turn.refresh_from_db()
    assert turn.text != "forged"
    # No delete action on the list, and users and groups are not on the index.
    changelist = teacher_client.get(CHANGELIST)
    assert "delete_selected" not in changelist.content.decode()
    index = teacher_client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:auth_user_changelist") not in index


def site_header(client):
    html = client.get(reverse("home")).content.decode()
    return html[html.index('<header class="site-header">'):html.index("</header>")]


def test_site_header_shows_each_role_its_links(client, teacher_user, learner_user):
    live, admin_index = reverse("tutor:teacher_live"), reverse("admin:index")
    history, tutor = reverse("assessments:history"), reverse("tutor:session")
    client.force_login(teacher_user)
    html = site_header(client)
    assert f'href="{live}"' in html and f'href="{admin_index}"' in html
    assert f'href="{history}"' not in html and f'href="{tutor}"' not in html
    client.force_login(learner_user)
    html = site_header(client)
    assert f'href="{history}"' in html and f'href="{tutor}"' in html
    assert f'href="{live}"' not in html and f'href="{admin_index}"' not in html


def test_403_is_styled_and_404_template_exists(client, teacher_user, settings):
    client.force_login(teacher_user)
    response = client.get(reverse("assessments:history"))
    assert response.status_code == 403
    html = response.content.decode()
    assert "site-header" in html and "This page is not for this account" in html
    settings.DEBUG = False
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and "There is nothing here" in response.content.decode()


def test_learner_has_no_admin(client, learner_user, make_assessment):
    assessment = make_assessment("other")
    client.force_login(learner_user)
    for url in (reverse("admin:index"), AGREEMENT, reverse("admin:assessments_assessment_change", args=[assessment.pk])):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login")), url


def test_staff_without_review_permission_has_no_review_action(client, make_user, make_assessment):
    from django.contrib.auth.models import Permission

    user = make_user("viewer", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename="view_assessment"))
    make_assessment()
    client.force_login(user)
    html = client.get(CHANGELIST).content.decode()
    assert "mark_reviewed_in_agreement" not in html and "export_csv" in html


def test_probe_and_session_pages_still_open(teacher_client, make_assessment):
    assessment = make_assessment()
    probe = Probe.objects.filter(session=assessment.session).first()
    assert teacher_client.get(reverse("admin:assessments_probe_change", args=[probe.pk])).status_code == 200
    session = TutorSession.objects.get(pk=assessment.session_id)
    assert teacher_client.get(reverse("admin:assessments_tutorsession_change", args=[session.pk])).status_code == 200


def test_history_and_facet_counts_open_for_a_teacher(teacher_client, make_assessment):
    assessment = make_assessment("ana", "B1", "A2")
    history = reverse("admin:assessments_assessment_history", args=[assessment.pk])
    assert teacher_client.get(history).status_code == 200
    # "Show counts" runs every filter's lookups as facets, the custom ones included.
    response = teacher_client.get(CHANGELIST, {"_facets": "1"})
    assert response.status_code == 200 and "One apart (1)" in response.content.decode()
