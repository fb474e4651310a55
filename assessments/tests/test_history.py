"""The learner's assessment history: own assessments only, with a server-rendered chart."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from assessments.models import Assessment, TutorSession, Turn
from assessments.cefr import LEVELS
from assessments.chart import CHART_BOTTOM, CHART_TOP, level_chart

pytestmark = pytest.mark.django_db


def make_assessment(user, level, *, days_ago=0, teacher_level="", summary="", status="delivered", **fields):
    when = timezone.now() - timedelta(days=days_ago)
    session = TutorSession.objects.create(
        learner=user.learner, upstream="simulator", model="gpt-realtime", target_language="es", started_at=when
    )
    return Assessment.objects.create(
        learner=user.learner,
        session=session,
        level=level,
        teacher_level=teacher_level,
        summary=summary,
        status=status,
        created_at=when,
        **fields,
    )


def chart_levels(html):
    """The data-level of each chart point, in document (= date) order."""
    svg = html[html.index('<svg id="level-chart"') : html.index("</svg>")]
    return re.findall(r'<circle class="chart-point[^"]*"[^>]*data-level="(\w\d)"', svg)


def test_history_lists_own_assessments_newest_first(client, learner_user):
    make_assessment(learner_user, "A2", days_ago=10, summary="A first try.")
    make_assessment(learner_user, "B1", days_ago=3, summary="Clear progress.", teacher_level="B2")
    client.force_login(learner_user)

    response = client.get(reverse("assessments:history"))

    assert response.status_code == 200
    html = response.content.decode()
    assert html.index("Clear progress.") < html.index("A first try.")
    rows = response.context["assessments"]
    assert [a.level for a in rows] == ["B1", "A2"]
    assert "Graded and read out to you" in html  # the learner's wording, not the admin's
    assert "not reviewed" in html  # the A2 one


def test_history_chart_points_match_the_levels_in_date_order(client, learner_user):
    make_assessment(learner_user, "B1", days_ago=1)
    make_assessment(learner_user, "A1", days_ago=30)
    make_assessment(learner_user, "A2", days_ago=20, teacher_level="B1")  # the teacher's level is shown
    make_assessment(learner_user, "B2", days_ago=0)
    client.force_login(learner_user)

    html = client.get(reverse("assessments:history")).content.decode()

    assert chart_levels(html) == ["A1", "B1", "B1", "B2"]
    assert "<polyline" in html
    assert 'role="img"' in html and "Your CEFR level over time" in html


def test_chart_geometry_higher_level_is_higher_on_the_chart(learner_user):
    assessments = [make_assessment(learner_user, level, days_ago=10 - i) for i, level in enumerate(LEVELS)]
    chart = level_chart(assessments)
    ys = [p.y for p in chart.points]
    xs = [p.x for p in chart.points]
    assert ys[0] == CHART_BOTTOM and ys[-1] == CHART_TOP
    assert ys == sorted(ys, reverse=True)  # SVG y grows downwards
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    assert [p.level for p in chart.points] == list(LEVELS)
    assert len(chart.polyline.split()) == len(LEVELS)


def test_history_without_assessments_invites_a_session(client, learner_user):
    client.force_login(learner_user)
    response = client.get(reverse("assessments:history"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "No assessments yet" in html
    assert 'id="level-chart"' not in html


def test_history_never_shows_another_learners_assessments(client, learner_user, make_user):
    other = make_user("bruno", learner=True)
    make_assessment(other, "C1", summary="Secret summary of Bruno.")
    make_assessment(learner_user, "A2", summary="Summary of Ana.")
    client.force_login(learner_user)

    html = client.get(reverse("assessments:history")).content.decode()

    assert "Summary of Ana." in html
    assert "Bruno" not in html and "C1" not in chart_levels(html)


def test_detail_of_own_assessment_shows_level_criteria_and_transcript(client, learner_user):
    a = make_assessment(
        learner_user, "B1", summary="You can talk about your plans.", criteria={"range": "B1", "fluency": "A2"}
    )
    Turn.objects.create(session=a.session, role="tutor", text="¿Qué vas a hacer mañana?", level="B1")
    Turn.objects.create(session=a.session, role="learner", text="Voy a visitar a mi abuela.", level="B1")
    client.force_login(learner_user)

    response = client.get(reverse("assessments:history_detail", args=[a.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert "You can talk about your plans." in html
    assert "Threshold" in html  # B1's name
    assert "Fluency" in html and "Voy a visitar a mi abuela." in html


def test_detail_of_another_learners_assessment_is_404(client, learner_user, make_user):
    other = make_user("bruno", learner=True)
    theirs = make_assessment(other, "C1", summary="Secret summary of Bruno.")
    client.force_login(learner_user)

    response = client.get(reverse("assessments:history_detail", args=[theirs.pk]))

    assert response.status_code == 404
    assert "Secret summary of Bruno." not in response.content.decode()


def test_detail_of_a_missing_assessment_is_404(client, learner_user):
    client.force_login(learner_user)
    assert client.get(reverse("assessments:history_detail", args=[999999])).status_code == 404


@pytest.mark.parametrize("name,args", [("assessments:history", []), ("assessments:history_detail", [1])])
def test_anonymous_is_redirected_to_login(client, name, args):
    url = reverse(name, args=args)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_teacher_without_learner_profile_gets_403(client, teacher_user, learner_user):
    a = make_assessment(learner_user, "B1")
    client.force_login(teacher_user)
    assert client.get(reverse("assessments:history")).status_code == 403
    assert client.get(reverse("assessments:history_detail", args=[a.pk])).status_code == 403


def test_history_link_in_the_site_navigation_for_learners(client, learner_user):
    client.force_login(learner_user)
    html = client.get(reverse("tutor:session")).content.decode()
    assert f'href="{reverse("assessments:history")}"' in html


def test_not_rated_sessions_are_listed_but_never_drawn(client, learner_user):
    make_assessment(learner_user, "B1", days_ago=5, summary="Good.")
    for days in (4, 3, 2):
        make_assessment(learner_user, "", days_ago=days, status=Assessment.Status.NOT_RATED, summary="Not enough.")
    make_assessment(learner_user, "B1", days_ago=1, summary="Good again.")
    client.force_login(learner_user)

    html = client.get(reverse("assessments:history")).content.decode()

    assert chart_levels(html) == ["B1", "B1"]  # the line is not pulled down by sessions without a level
    assert html.count('data-rating="not_rated"') == 3


def test_a_partial_assessment_says_at_least(client, learner_user):
    a = make_assessment(learner_user, "A2", partial=True, summary="Your speaking level is at least A2.")
    client.force_login(learner_user)
    assert "at least A2" in client.get(reverse("assessments:history")).content.decode()
    assert "at least" in client.get(reverse("assessments:history_detail", args=[a.pk])).content.decode()


def test_a_not_rated_assessment_shows_no_level_and_no_feedback(client, learner_user):
    a = make_assessment(learner_user, "", status=Assessment.Status.NOT_RATED, summary="Not enough speaking.")
    client.force_login(learner_user)
    html = client.get(reverse("assessments:history_detail", args=[a.pk])).content.decode()
    assert "Not rated" in html and "level-badge" not in html and "Criteria" not in html
