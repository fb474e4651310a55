"""Django admin for teachers: every record browsable, assessments reviewable on one screen.

Teachers are staff users in the `Teachers` group (assessments.roles). They view everything; on an
assessment they may change only the review fields (teacher level and notes). Machine-written
records (sessions, turns, probes) are read-only for everyone. The assessment admin adds the review
desk: filters for what needs a look, the machine's reasons beside the teacher's form, an action that
confirms several ratings at once, a CSV export, and the "how far to trust the machine" page.
"""

from collections import Counter

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Case, Count, IntegerField, Q, Value, When
from django.db.models.functions import Abs
from django.http import HttpResponse, StreamingHttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from assessments import review
from assessments.agreement import FURTHER, ONE_APART, SAME, agreement, agreement_label, distance
from assessments.cefr import LEVELS
from assessments.exports import reviewed_answers_csv
from assessments.grading import criteria_rows
from assessments.models import Assessment, Language, Learner, Probe, TutorSession, Turn
from assessments.placement import BREAKDOWNS_FOR_CEILING, PROBES_TO_SUSTAIN

SECONDS = "%Y-%m-%d %H:%M:%S"


def to_the_second(value):
    """A timestamp as teachers read it: local time, to the second ("-" when unset)."""
    return timezone.localtime(value).strftime(SECONDS) if value else "-"


def seconds_display(field: str, description: str):
    """An admin column or read-only field showing the timestamp `field` to the second."""
    return admin.display(description=description, ordering=field)(lambda self, obj: to_the_second(getattr(obj, field)))


class ReadOnlyAdminMixin:
    """Records written by the tutor session: shown, never added, changed or deleted by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class TurnInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Turn
    fields = ("created_at", "role", "level", "mode", "text", "fluency", "item_id")
    readonly_fields = fields
    extra = 0
    show_change_link = True


class ProbeInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Probe
    fields = ("created_at", "level", "outcome", "evidence", "rater", "tutor_outcome", "disagreement")
    readonly_fields = fields
    extra = 0


@admin.register(Learner)
class LearnerAdmin(admin.ModelAdmin):
    list_display = ("user", "target_language", "native_language", "created_at")
    list_filter = ("target_language", "native_language")
    search_fields = ("user__username", "user__email")
    list_select_related = ("user",)


@admin.register(TutorSession)
class TutorSessionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("__str__", "learner", "upstream", "model", "started_at", "ended_at", "end_reason")
    list_filter = ("upstream", "end_reason", "target_language")
    search_fields = ("learner__user__username",)
    date_hierarchy = "started_at"
    list_select_related = ("learner__user",)
    inlines = (TurnInline, ProbeInline)


@admin.register(Turn)
class TurnAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "session", "role", "level", "text")
    list_filter = ("role", "level")
    search_fields = ("text", "session__learner__user__username")
    list_select_related = ("session__learner__user",)
    exclude = ("audio",)  # played on the assessment page through the guarded view, never a media link


@admin.register(Probe)
class ProbeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "session", "level", "outcome", "evidence", "rater", "tutor_outcome", "disagreement")
    list_filter = ("level", "outcome", "mode", "disagreement")
    search_fields = ("evidence", "session__learner__user__username")
    list_select_related = ("session__learner__user",)


# --- the review desk -------------------------------------------------------------------------------


def level_rank(field: str) -> Case:
    """The position of a level field on the CEFR scale, in SQL (NULL when blank)."""
    return Case(*(When(**{field: level}, then=Value(i)) for i, level in enumerate(LEVELS)), output_field=IntegerField())


def with_distance(queryset):
    """Annotate `level_distance`: how many levels apart machine and teacher are (NULL if either is blank)."""
    return queryset.annotate(level_distance=Abs(level_rank("level") - level_rank("teacher_level")))


class ReviewedFilter(admin.SimpleListFilter):
    title = "review"
    parameter_name = "reviewed"

    def lookups(self, request, model_admin):
        return (("no", "Not reviewed"), ("yes", "Reviewed"))

    def queryset(self, request, queryset):
        if self.value() in ("no", "yes"):
            return queryset.filter(reviewed_at__isnull=self.value() == "no")
        return queryset


class AgreementFilter(admin.SimpleListFilter):
    title = "teacher vs machine"
    parameter_name = "agreement"
    DISTANCES = {"same": Q(level_distance=0), "one": Q(level_distance=1), "further": Q(level_distance__gte=2),
                 "disagree": Q(level_distance__gte=1)}

    def lookups(self, request, model_admin):
        return (("disagree", "Disagreement"), ("same", "Same level"), ("one", "One apart"), ("further", "Further apart"))

    def queryset(self, request, queryset):
        if self.value() in self.DISTANCES:
            return with_distance(queryset).filter(self.DISTANCES[self.value()])
        return queryset


class LanguageFilter(admin.SimpleListFilter):
    title = "language"
    parameter_name = "language"

    def lookups(self, request, model_admin):
        return Language.choices

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(session__target_language=self.value())
        return queryset


class GraderFlagFilter(admin.SimpleListFilter):
    """The assessments whose grader saw the level or the evidence differently: the ones to look at first."""

    title = "grader's flag"
    parameter_name = "grader_flag"

    def lookups(self, request, model_admin):
        return (("yes", "Flagged by the grader"), ("no", "Not flagged"))

    def queryset(self, request, queryset):
        flagged = ~Q(grader_level="") | ~Q(grader_flag="")
        if self.value() == "yes":
            return queryset.filter(flagged)
        if self.value() == "no":
            return queryset.exclude(flagged)
        return queryset


class RatingFilter(admin.SimpleListFilter):
    title = "rating"
    parameter_name = "rating"

    def lookups(self, request, model_admin):
        return (("full", "Full (ceiling found)"), ("partial", "Partial"), ("not_rated", "Not rated"))

    def queryset(self, request, queryset):
        if self.value() == "full":
            return queryset.filter(partial=False).exclude(status=Assessment.Status.NOT_RATED)
        if self.value() == "partial":  # a level, "at least": not rated ones have none
            return queryset.filter(partial=True).exclude(status=Assessment.Status.NOT_RATED)
        if self.value() == "not_rated":
            return queryset.filter(status=Assessment.Status.NOT_RATED)
        return queryset


def placement_ladder(probes) -> list[dict]:
    """Per level, the probes' outcomes in order and what placement made of them."""
    ladder = []
    for level in LEVELS:
        outcomes = [p for p in probes if p.level == level]
        sustained = sum(p.outcome == Probe.Outcome.SUSTAINED for p in outcomes)
        breakdowns = sum(p.outcome == Probe.Outcome.BREAKDOWN for p in outcomes)  # not ratable counts for neither
        if breakdowns >= BREAKDOWNS_FOR_CEILING:
            verdict = "ceiling"
        elif sustained >= PROBES_TO_SUSTAIN:
            verdict = "sustained"
        else:
            verdict = "tried" if outcomes else "untested"
        ladder.append({"level": level, "probes": outcomes, "verdict": verdict})
    return ladder


class ReviewForm(forms.ModelForm):
    class Meta:
        model = Assessment
        fields = ("teacher_level", "notes")
        widgets = {"notes": forms.Textarea(attrs={"rows": 4})}


@admin.register(Assessment)
class AssessmentAdmin(admin.ModelAdmin):
    list_display = (
        "learner_name", "language", "machine_level", "teacher", "agreement_column", "grader", "status", "created",
    )
    list_filter = (
        ReviewedFilter, AgreementFilter, "level", LanguageFilter, "status", ("created_at", admin.DateFieldListFilter),
        RatingFilter, GraderFlagFilter, "grader",
    )
    search_fields = (
        "learner__user__username", "learner__user__first_name", "learner__user__last_name", "learner__user__email",
    )
    ordering = ("-created_at", "-pk")
    list_select_related = ("learner__user", "session")
    actions = ("mark_reviewed_in_agreement", "export_csv", "export_reviewed_answers")
    form = ReviewForm
    fieldsets = (
        ("The machine's rating", {"fields": ("learner", "session_link", "level", "status", "rating", "grader",
                                             "grader_disagreement", "placement")}),
        ("Criteria", {"fields": ("criteria_table", "summary", "failure_reason")}),
        ("The conversation", {"fields": ("conversation",)}),
        ("Timeline", {"fields": ("created", "graded", "delivered", "failed")}),
        ("Teacher review", {"fields": ("teacher_level", "notes", "reviewed_by", "reviewed")}),
    )
    # Everything the machine wrote; only teacher_level and notes are left editable.
    readonly_fields = (
        "learner", "session_link", "level", "status", "rating", "grader", "grader_disagreement", "placement",
        "criteria_table", "summary",
        "failure_reason", "conversation", "created", "graded", "delivered", "failed", "reviewed_by", "reviewed",
    )
    review_fields = ("teacher_level", "notes")

    # --- the list ---

    @admin.display(description="Learner", ordering="learner__user__username")
    def learner_name(self, obj):
        user = obj.learner.user
        return user.get_full_name() or user.get_username()

    @admin.display(description="Language", ordering="session__target_language")
    def language(self, obj):
        return obj.session.get_target_language_display()

    @admin.display(description="Machine", ordering="level")
    def machine_level(self, obj):
        return review.machine_level(obj)

    @admin.display(description="Teacher", ordering="teacher_level")
    def teacher(self, obj):
        return obj.teacher_level or "-"

    @admin.display(description="Agreement")
    def agreement_column(self, obj):
        return agreement_label(obj.level, obj.teacher_level) or "-"

    created = seconds_display("created_at", "Date")
    graded = seconds_display("graded_at", "Graded")
    delivered = seconds_display("delivered_at", "Delivered")
    failed = seconds_display("failed_at", "Delivery failed")
    reviewed = seconds_display("reviewed_at", "Reviewed at")

    # --- the review screen ---

    @admin.display(description="Session")
    def session_link(self, obj):
        url = reverse("admin:assessments_tutorsession_change", args=[obj.session_id])
        return format_html(
            '<a href="{}">{}</a> · ended: {}', url, obj.session, obj.session.get_end_reason_display() or "-"
        )

    @admin.display(description="Placement ladder")
    def placement(self, obj):
        probes = list(obj.session.probes.all())
        return render_to_string(
            "admin/assessments/assessment/placement.html",
            {"ladder": placement_ladder(probes), "probes": probes, "to_sustain": PROBES_TO_SUSTAIN,
             "for_ceiling": BREAKDOWNS_FOR_CEILING},
        )

    @admin.display(description="Rating")
    def rating(self, obj):
        """Full or partial in words (the boolean field would show a red cross before its help text)."""
        return review.rating_text(obj)

    @admin.display(description="Grader's flag")
    def grader_disagreement(self, obj):
        """Where the grader saw it differently: stored for the teacher, never applied to the level."""
        if not (obj.grader_level or obj.grader_flag):
            return "-"
        level = f"The grader's own level: {obj.grader_level}. " if obj.grader_level else ""
        return format_html('<span class="grader-flag">{}{}</span>', level, obj.grader_flag)

    @admin.display(description="Criteria")
    def criteria_table(self, obj):
        return render_to_string("admin/assessments/assessment/criteria.html", {"rows": criteria_rows(obj.criteria)})

    @admin.display(description="Turns")
    def conversation(self, obj):
        turns = list(obj.session.turns.all())
        return render_to_string("admin/assessments/assessment/conversation.html", {"turns": turns})

    def get_readonly_fields(self, request, obj=None):
        if self.has_review_permission(request):
            return self.readonly_fields
        return self.readonly_fields + self.review_fields

    def has_add_permission(self, request):
        return False  # assessments are created by placement, never by hand

    def has_review_permission(self, request):
        return request.user.has_perm("assessments.review_assessment")

    def save_model(self, request, obj, form, change):
        if any(name in form.changed_data for name in self.review_fields):
            obj.reviewed_by = request.user
            obj.reviewed_at = timezone.now()
        super().save_model(request, obj, form, change)

    def construct_change_message(self, request, form, formsets, add=False):
        """The admin history names each review field changed with its old and new value."""
        changed = [name for name in self.review_fields if name in form.changed_data]
        if add or not changed:
            return super().construct_change_message(request, form, formsets, add)
        return review.change_message({name: (form.initial.get(name) or "", form.cleaned_data[name]) for name in changed})

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:  # not on a redirect (bad filter, action done)
            per_level = context["cl"].queryset.order_by().values("level").annotate(n=Count("pk"))
            counts = {row["level"]: row["n"] for row in per_level}
            context["level_counts"] = [(level, counts.get(level, 0)) for level in LEVELS]
            context["not_rated_count"] = counts.get("", 0)
        return response

    # --- actions ---

    @admin.action(description="Mark selected as reviewed, agreeing with the machine's level",
                  permissions=["review"])
    def mark_reviewed_in_agreement(self, request, queryset):
        """Confirms the machine's level of the selected full ratings no teacher has reviewed yet
        (review.agreement_verdict); each confirmation is in the object's history."""
        with transaction.atomic():
            # Locked afresh by id: the changelist's queryset may carry joins and filters' annotations.
            selected = list(Assessment.objects.select_for_update().filter(pk__in=queryset.values("pk")).order_by("pk"))
            verdicts = Counter(review.agreement_verdict(a) for a in selected)
            now = timezone.now()
            for assessment in (a for a in selected if review.agreement_verdict(a) == "agree"):
                message = review.change_message({"teacher_level": (assessment.teacher_level, assessment.level)})
                assessment.teacher_level, assessment.reviewed_by, assessment.reviewed_at = assessment.level, request.user, now
                assessment.save(update_fields=["teacher_level", "reviewed_by", "reviewed_at"])
                self.log_change(request, assessment, f"{message} (the action: agreeing with the machine's level).")
        self.message_user(request, f"{verdicts['agree']} assessment(s) marked as reviewed in agreement.", messages.SUCCESS)
        for reason, text in review.LEFT_ALONE.items():
            if verdicts[reason]:
                self.message_user(request, text.format(n=verdicts[reason]), messages.WARNING)

    @admin.action(description="Export reviewed answers for rater_eval (CSV)")
    def export_reviewed_answers(self, request, queryset):
        response = HttpResponse(reviewed_answers_csv(queryset.select_related("session")),
                                content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="parla-reviewed-answers.csv"'
        return response

    @admin.action(description="Export selected as CSV")
    def export_csv(self, request, queryset):
        """The selection as CSV, streamed row by row (one stable header: every criterion, always)."""
        rows = queryset.select_related("learner__user", "session", "reviewed_by").order_by("-created_at", "-pk")
        response = StreamingHttpResponse(review.csv_lines(rows.aiterator(chunk_size=500)), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="parla-assessments.csv"'
        return response

    # --- how far to trust the machine ---

    def get_urls(self):
        return [
            path("agreement/", self.admin_site.admin_view(self.agreement_view), name="assessments_assessment_agreement"),
            *super().get_urls(),
        ]

    def agreement_view(self, request):
        """Teacher-versus-machine agreement over reviewed assessments, filterable by language, grader, date."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = AgreementFilterForm(request.GET or None, graders=self.graders())
        reviewed = Assessment.objects.exclude(teacher_level="").exclude(level="").filter(reviewed_at__isnull=False)
        if form.is_valid():
            reviewed = form.apply(reviewed)
        rows = list(with_distance(reviewed).select_related("learner__user", "session").order_by("-level_distance", "-created_at"))
        figures = agreement([(a.level, a.teacher_level) for a in rows])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "How far to trust the machine",
            "form": form,
            "figures": figures,
            "matrix": list(zip(LEVELS, figures.matrix)),
            "levels": LEVELS,
            "largest": [(a, distance(a.level, a.teacher_level)) for a in rows if a.level_distance][:10],
            "labels": (SAME, ONE_APART, FURTHER),
        }
        return TemplateResponse(request, "admin/assessments/assessment/agreement.html", context)

    def graders(self):
        return list(Assessment.objects.exclude(grader="").order_by("grader").values_list("grader", flat=True).distinct())


class AgreementFilterForm(forms.Form):
    language = forms.ChoiceField(required=False, choices=[("", "All languages"), *Language.choices])
    grader = forms.ChoiceField(required=False)
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, graders=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["grader"].choices = [("", "All graders"), *((g, g) for g in graders)]

    def apply(self, queryset):
        data = self.cleaned_data
        if data["language"]:
            queryset = queryset.filter(session__target_language=data["language"])
        if data["grader"]:
            queryset = queryset.filter(grader=data["grader"])
        if data["since"]:
            queryset = queryset.filter(created_at__date__gte=data["since"])
        if data["until"]:
            queryset = queryset.filter(created_at__date__lte=data["until"])
        return queryset
