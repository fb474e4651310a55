"""Django admin for teachers: every record browsable, assessments reviewable.

Teachers are staff users in the `Teachers` group (assessments.roles). They view everything; on an
assessment they may change only the review fields (teacher level and notes). Machine-written
records (sessions, turns, probes) are read-only for everyone.
"""

import json

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html

from assessments.models import Assessment, Learner, Probe, TutorSession, Turn


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
    fields = ("created_at", "role", "level", "text", "item_id")
    readonly_fields = fields
    extra = 0
    show_change_link = True


class ProbeInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Probe
    fields = ("created_at", "level", "outcome", "evidence")
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


@admin.register(Probe)
class ProbeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "session", "level", "outcome", "evidence")
    list_filter = ("level", "outcome")
    search_fields = ("evidence", "session__learner__user__username")
    list_select_related = ("session__learner__user",)


@admin.register(Assessment)
class AssessmentAdmin(admin.ModelAdmin):
    list_display = (
        "learner", "level", "teacher_level", "status", "grader", "partial", "created_at", "reviewed_by",
    )
    list_filter = ("status", "level", "grader", "partial")
    search_fields = ("learner__user__username",)
    date_hierarchy = "created_at"
    list_select_related = ("learner__user", "reviewed_by")
    fieldsets = (
        ("Placement", {"fields": ("learner", "session", "level", "partial", "grader", "status")}),
        ("Grade", {"fields": ("criteria_table", "summary", "failure_reason")}),
        ("Timeline", {"fields": ("created_at", "graded_at", "delivered_at", "failed_at")}),
        ("Teacher review", {"fields": ("teacher_level", "notes", "reviewed_by", "reviewed_at")}),
    )
    # Everything the machine wrote; only teacher_level and notes are left editable.
    readonly_fields = (
        "learner", "session", "level", "partial", "grader", "status", "criteria_table", "summary",
        "failure_reason", "created_at", "graded_at", "delivered_at", "failed_at", "reviewed_by",
        "reviewed_at",
    )
    review_fields = ("teacher_level", "notes")

    @admin.display(description="Criteria")
    def criteria_table(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.criteria, indent=2, ensure_ascii=False))

    def get_readonly_fields(self, request, obj=None):
        if request.user.has_perm("assessments.review_assessment"):
            return self.readonly_fields
        return self.readonly_fields + self.review_fields

    def has_add_permission(self, request):
        return False  # assessments are created by placement, never by hand

    def save_model(self, request, obj, form, change):
        if any(name in form.changed_data for name in self.review_fields):
            obj.reviewed_by = request.user
            obj.reviewed_at = timezone.now()
        super().save_model(request, obj, form, change)
