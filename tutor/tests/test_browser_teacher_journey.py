"""A teacher's journey through the review desk in a real browser, as a person walks it (issue 24).

A live Parla server (subprocess, its own SQLite) holds six assessments of one learner; the teacher
logs in from the home page's "Log in" link, reviews two by hand, runs the "agree with the machine"
action on everything, exports everything as CSV, and reads the agreement page, whose figures are
checked against values computed by hand below. Then the filters, the list on a phone, the review
screen of a partial rating and the live view's legend.
"""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from tutor.tests.browser_support import (  # noqa: F401 (fixtures)
    browser_output,
    chromium,
    fake_mic_wav,
    live_server,
)

pytestmark = pytest.mark.browser

TEACHER, TEACHER_PASSWORD = "tomas", "journey-teacher-pw-1"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}

# Six assessments (machine level, partial, status, criteria): the names say what the teacher does.
SETUP = f"""
import json
from django.contrib.auth import get_user_model
from assessments.models import Assessment, Learner
from assessments.roles import ensure_teachers_group
from assessments.tests.factories import make_session_with_assessment
teacher = get_user_model().objects.create_user({TEACHER!r}, password={TEACHER_PASSWORD!r}, is_staff=True)
teacher.groups.add(ensure_teachers_group())
learner = Learner.objects.get(user__username="ana")
rows = {{
    "by_hand_b2": ("B2", False, "delivered", {{"range": {{"level": "B2", "evidence": "x", "confidence": "high"}},
                   "phonology": {{"level": None, "evidence": "a transcript cannot show pronunciation"}}}}),
    "by_hand_a2": ("A2", False, "delivered", {{"fluency": "A2"}}),
    "agree_b1": ("B1", False, "graded", {{"fluency": "B1", "range": "B1"}}),
    "partial_a1": ("A1", True, "delivery_failed", {{"fluency": "A1"}}),
    "not_rated": ("", True, "not_rated", {{}}),
    "agree_c1": ("C1", False, "delivered", {{"accuracy": "C1"}}),
}}
ids = {{}}
for name, (level, partial, status, criteria) in rows.items():
    session, a = make_session_with_assessment(learner, level=level, status=status)
    Assessment.objects.filter(pk=a.pk).update(partial=partial, criteria=criteria)
    ids[name] = a.pk
print(json.dumps(ids))
"""


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("teacher-journey"), true_level=None) as server:
        ids = json.loads(server.query(SETUP))
        yield server, ids


@pytest.fixture
def context(chromium, request):
    ctx = chromium.new_context(viewport=getattr(request, "param", DESKTOP), accept_downloads=True)
    try:
        yield ctx
    finally:
        ctx.close()


def log_in_from_home(page, server) -> None:
    """The home page's "Log in to start a session" link (next=/session/), as a teacher."""
    page.goto(f"{server.url}/")
    page.get_by_role("link", name="Log in to start a session").click()
    page.get_by_label("Username").fill(TEACHER)
    page.get_by_label("Password").fill(TEACHER_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def run_action_on_all(page, server, action: str):
    page.goto(f"{server.url}/admin/assessments/assessment/")
    page.locator("#action-toggle").check()
    page.locator("select[name=action]").select_option(action)
    page.locator("button[name=index]").click()


def review_by_hand(page, server, pk: int, level: str, notes: str = "") -> None:
    page.goto(f"{server.url}/admin/assessments/assessment/{pk}/change/")
    page.get_by_label("Teacher level").select_option(level)
    if notes:
        page.get_by_label("Notes").fill(notes)
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url("**/admin/assessments/assessment/")


def history(page, server, pk: int) -> str:
    page.goto(f"{server.url}/admin/assessments/assessment/{pk}/history/")
    return page.locator("#change-history").inner_text()


def stored(server, pk: int) -> tuple[str, str, bool]:
    out = server.query(
        f"from assessments.models import Assessment; a = Assessment.objects.get(pk={pk}); "
        "print(repr((a.teacher_level, a.notes, a.reviewed_at is not None)))"
    )
    return eval(out)  # a tuple literal printed by the server


def test_teacher_reviews_agrees_exports_and_reads_the_agreement(context, desk, browser_output):
    server, ids = desk
    page = context.new_page()

    # Finding 3: a teacher who logs in from the home page lands on their desk, not on /session/.
    log_in_from_home(page, server)
    assert page.url == f"{server.url}/admin/"
    assert page.get_by_text("Teachers' desk").is_visible()

    # Two reviews by hand: machine B2, teacher A2 with a note; machine A2, teacher B1.
    review_by_hand(page, server, ids["by_hand_b2"], "A2", "Hesitant beyond A2 topics.")
    review_by_hand(page, server, ids["by_hand_a2"], "B1")

    # Finding 1: the bulk action on everything leaves both reviews as the teacher made them.
    run_action_on_all(page, server, "mark_reviewed_in_agreement")
    messages = page.locator("ul.messagelist").inner_text()
    assert "2 assessment(s) marked as reviewed in agreement" in messages  # B1 and C1
    assert "2 already reviewed assessment(s) left as the teacher reviewed them" in messages
    assert '1 partial ("at least") assessment(s) left for a teacher\'s level' in messages
    assert "1 not rated assessment(s) left" in messages
    assert stored(server, ids["by_hand_b2"]) == ("A2", "Hesitant beyond A2 topics.", True)
    assert stored(server, ids["by_hand_a2"]) == ("B1", "", True)
    assert stored(server, ids["agree_b1"]) == ("B1", "", True)
    assert stored(server, ids["not_rated"]) == ("", "", False)
    assert stored(server, ids["partial_a1"]) == ("", "", False)  # "at least A1" is not a level to agree with
    # Every review change is in the object's history with old and new values.
    by_hand = history(page, server, ids["by_hand_b2"])
    assert "Changed teacher level from “” to “A2”" in by_hand
    assert "notes from “” to “Hesitant beyond A2 topics.”" in by_hand
    assert "agreeing with the machine" not in by_hand
    assert "Changed teacher level from “” to “B1” (the action: agreeing with the machine's level)" in history(
        page, server, ids["agree_b1"]
    )

    # Finding 2: export everything (rated, partial and not rated mixed): one stable header, every row.
    page.goto(f"{server.url}/admin/assessments/assessment/")
    page.locator("#action-toggle").check()
    page.locator("select[name=action]").select_option("export_csv")
    with page.expect_download() as download:
        page.locator("button[name=index]").click()
    rows = list(csv.DictReader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
    header = list(rows[0].keys())
    criteria = [h for h in header if h.startswith("criterion_")]
    assert criteria == [f"criterion_{c}" for c in ("range", "accuracy", "fluency", "interaction", "coherence", "phonology")]
    by_id = {int(r["id"]): r for r in rows}
    assert set(by_id) == set(ids.values())
    b2 = by_id[ids["by_hand_b2"]]
    assert (b2["machine_level"], b2["teacher_level"], b2["agreement"], b2["notes"]) == (
        "B2", "A2", "further", "Hesitant beyond A2 topics.",
    )
    assert (b2["criterion_range"], b2["criterion_phonology"], b2["criterion_fluency"]) == ("B2", "", "")
    not_rated = by_id[ids["not_rated"]]
    assert (not_rated["machine_level"], not_rated["status"], not_rated["criterion_fluency"]) == ("", "not_rated", "")

    # The agreement page over the four reviewed (machine, teacher) pairs:
    # (B2,A2) (A2,B1) (B1,B1) (C1,C1). Exact 2/4 = 50 %; within one level 3/4 = 75 %.
    # Quadratic kappa, levels A1..C2 = 0..5, w = (i-j)^2/25, n = 4: observed sum(w*O) = (2^2 + 1^2)/25
    # = 0.2; machine marginals 1 each at 1,2,3,4; teacher marginals 1:1 2:2 4:1; expected sum(w*E) =
    # sum_i sum_j c_j (i-j)^2 / (25*4) = (11 + 5 + 7 + 17) / 100 = 0.4; kappa = 1 - 0.2/0.4 = 0.50.
    # (With the old action's overwrites it read 100 % and 1.00.)
    page.goto(f"{server.url}/admin/assessments/assessment/agreement/")
    figure = lambda name: page.locator(f"[data-figure={name}]").inner_text()  # noqa: E731
    assert (figure("count"), figure("exact"), figure("adjacent"), figure("kappa")) == ("4", "50%", "75%", "0.50")


def test_partial_filter_machine_column_and_review_screen(context, desk):
    server, ids = desk
    page = context.new_page()
    log_in_from_home(page, server)
    # Finding 4: "By rating: Partial" lists the partial rating only, and says "at least A1".
    page.goto(f"{server.url}/admin/assessments/assessment/")
    page.locator("#changelist-filter a", has_text="Partial").click()
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert rows.first.locator(".field-machine_level").inner_text() == "at least A1"
    assert page.locator(f"#result_list a[href*='/{ids['partial_a1']}/change/']").count() == 1
    # The review screen says what partial means, in words, without a red cross before it.
    page.goto(f"{server.url}/admin/assessments/assessment/{ids['partial_a1']}/change/")
    rating = page.locator(".field-rating")
    assert "Partial: at least A1" in rating.inner_text()
    assert rating.locator("img").count() == 0
    assert page.locator(".field-partial").count() == 0


@pytest.mark.parametrize("context", [PHONE, DESKTOP], ids=["phone", "desktop"], indirect=True)
def test_review_list_fits_the_screen(context, desk, browser_output):
    """Finding 5: the admin list does not scroll sideways on a phone (its table scrolls in its box)."""
    server, _ = desk
    page = context.new_page()
    log_in_from_home(page, server)
    page.goto(f"{server.url}/admin/assessments/assessment/")
    width = page.viewport_size["width"]
    page.screenshot(path=browser_output / f"teacher-review-list-{width}.png", full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    if width > PHONE["width"]:
        return  # on a desktop the table may scroll inside its box beside the admin's menus
    # On a phone nor does the list inside its own box: every value of every assessment is on screen.
    assert page.evaluate("(e => e.scrollWidth <= e.clientWidth)(document.querySelector('#changelist .results'))")
    row = page.locator("#result_list tbody tr").first
    for cell in row.locator("[class*='field-']").all():
        box = cell.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, cell.inner_text()
    assert page.locator("#action-toggle").is_visible()  # "select all" is still there


@pytest.mark.parametrize("context", [PHONE, DESKTOP], ids=["phone", "desktop"], indirect=True)
def test_live_view_ladder_has_a_legend(context, desk):
    """Finding 5: the live view's ladder marks are explained on the page."""
    server, _ = desk
    page = context.new_page()
    log_in_from_home(page, server)
    page.goto(f"{server.url}/teacher/live/")
    legend = page.locator("#ladder-legend")
    assert legend.is_visible()
    text = legend.inner_text()
    for mark, meaning in (("✓", "sustained"), ("✕", "breakdown"), ("•", "being tried now"), ("·", "not tried yet")):
        assert re.search(rf"{re.escape(mark)}\s*{meaning}", text), (mark, text)
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
