"""Learners, their tutor sessions and the CEFR assessments teachers review (DESIGN section 6)."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from assessments.cefr import LEVEL_NAMES, LEVELS
from assessments.languages import LANGUAGES


class CEFRLevel(models.TextChoices):
    A1 = "A1", f"A1 {LEVEL_NAMES['A1']}"
    A2 = "A2", f"A2 {LEVEL_NAMES['A2']}"
    B1 = "B1", f"B1 {LEVEL_NAMES['B1']}"
    B2 = "B2", f"B2 {LEVEL_NAMES['B2']}"
    C1 = "C1", f"C1 {LEVEL_NAMES['C1']}"
    C2 = "C2", f"C2 {LEVEL_NAMES['C2']}"


assert tuple(CEFRLevel.values) == LEVELS  # one scale: the pure core's and the database's agree


Language = models.TextChoices("Language", [(name.upper(), (code, name)) for code, name in LANGUAGES.items()])


class Learner(models.Model):
    """Profile of a Django user who learns with Parla."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="learner")
    target_language = models.CharField(max_length=8, choices=Language.choices, default=Language.SPANISH)
    native_language = models.CharField(max_length=8, choices=Language.choices, default=Language.ENGLISH)
    # Feedback in English by default; on, the grader writes it in the native language (examples stay
    # in the target language).
    feedback_in_native_language = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["user__username"]

    def __str__(self):
        return f"{self.user.get_username()} ({self.get_target_language_display()})"


class TutorSession(models.Model):
    """One live conversation between a learner and the tutor."""

    class Upstream(models.TextChoices):
        SIMULATOR = "simulator", "Bundled simulator (demo mode)"
        OPENAI = "openai", "OpenAI Realtime API"

    class EndReason(models.TextChoices):
        CEILING = "ceiling", "Ceiling reached"
        TOP = "top", "Top level sustained"
        TIME_CAP = "time_cap", "Session time cap"
        LEARNER_LEFT = "learner_left", "Learner left"
        LEARNER_STOPPED = "learner_stopped", "Learner stopped"
        UPSTREAM_ERROR = "upstream_error", "Upstream error"
        UPSTREAM_EXPIRED = "upstream_expired", "Upstream session expired"
        SERVER_ERROR = "server_error", "Server error"
        SERVER_RESTART = "server_restart", "Server stopped (ended by the recovery sweep)"
        SERVER_DRAIN = "server_drain", "Server drained for a deploy (placement ended with what was known)"
        UPSTREAM_AUTH = "upstream_auth", "Upstream refused Parla's API key or access"
        UPSTREAM_BUSY = "upstream_busy", "Upstream busy (rate limited or unavailable)"
        UPSTREAM_QUOTA = "upstream_quota", "Upstream quota exhausted"
        UPSTREAM_MODEL = "upstream_model", "Upstream model not available"

    learner = models.ForeignKey(Learner, on_delete=models.CASCADE, related_name="sessions")
    upstream = models.CharField(max_length=16, choices=Upstream.choices)
    model = models.CharField(max_length=64)
    target_language = models.CharField(max_length=8, choices=Language.choices)
    upstream_session_id = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=20, choices=EndReason.choices, blank=True)
    # The warm-up: the level the learner said they speak at on the start screen (blank: not sure),
    # and the level placement started at (assessments.placement.starting_level).
    self_assessment = models.CharField(max_length=2, choices=CEFRLevel.choices, blank=True)
    start_level = models.CharField(max_length=2, choices=CEFRLevel.choices, default=CEFRLevel.A1)
    # Written periodically by the process running the session; a stale one means that process died
    # (assessments.recovery ends such sessions).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The process running it (assessments.leases.process_id): once that process holds no lease, it died.
    served_by = models.CharField(max_length=128, blank=True)
    # Its learner's socket dropped (or its process drained) mid-placement: nobody serves it, and it
    # awaits the learner's reconnection for PARLA_RESUME_SECONDS (tutor/runtime/resumption.py), after
    # which the recovery sweep ends it. Also set on a session whose handover the drop cut short: its
    # assessment is then shown on reconnecting.
    detached_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self):
        return f"Session {self.pk} of {self.learner} at {self.started_at:%Y-%m-%d %H:%M}"


class Turn(models.Model):
    """A finished utterance of the session. A learner turn is one answer: everything the learner said
    or typed between two tutor turns, fragments merged."""

    class Role(models.TextChoices):
        LEARNER = "learner", "Learner"
        TUTOR = "tutor", "Tutor"
        NARRATOR = "narrator", "Narrator"

    class Mode(models.TextChoices):
        SPOKEN = "spoken", "Spoken"
        WRITTEN = "written", "Written"

    session = models.ForeignKey(TutorSession, on_delete=models.CASCADE, related_name="turns")
    role = models.CharField(max_length=10, choices=Role.choices)
    # Only the learner's own words (typed, or from a real speech recognizer); empty when none are known.
    text = models.TextField(blank=True)
    mode = models.CharField(max_length=8, choices=Mode.choices, blank=True)  # learner answers only
    # What the learner's audio showed (assessments.fluency.FluencyMeasures.as_dict), for spoken answers.
    fluency = models.JSONField(default=dict, blank=True)
    item_id = models.CharField(max_length=64, blank=True)
    level = models.CharField(max_length=2, choices=CEFRLevel.choices)
    created_at = models.DateTimeField(default=timezone.now)
    # The learner's spoken answer as a WAV (assessments.services.save_turn_audio), through Django's
    # storage API; served only by assessments.views.turn_audio, deleted after PARLA_AUDIO_RETENTION_DAYS.
    audio = models.FileField(upload_to="turn-audio/%Y/%m/%d/", blank=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self):
        return f"{self.get_role_display()}: {self.shown_text[:60]}"

    @property
    def shown_text(self) -> str:
        """The words, or what is known of a spoken answer without words ("spoken answer, 6.2 s")."""
        if self.text or self.mode != self.Mode.SPOKEN:
            return self.text
        seconds = (self.fluency or {}).get("duration_ms", 0) / 1000
        return f"spoken answer, {seconds:.1f} s" if seconds else "spoken answer"


class Probe(models.Model):
    """One rated answer: the independent rater's judgement at the level probed, with the tutor's own
    `record_probe` opinion beside it (a second opinion; placement follows the rater)."""

    class Outcome(models.TextChoices):
        SUSTAINED = "sustained", "Sustained"
        BREAKDOWN = "breakdown", "Breakdown"
        NOT_RATABLE = "not_ratable", "Not ratable"

    session = models.ForeignKey(TutorSession, on_delete=models.CASCADE, related_name="probes")
    turn = models.ForeignKey(Turn, null=True, blank=True, on_delete=models.SET_NULL, related_name="probes")
    level = models.CharField(max_length=2, choices=CEFRLevel.choices)
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    evidence = models.TextField(blank=True)
    rater = models.CharField(max_length=64, blank=True)
    mode = models.CharField(max_length=8, choices=Turn.Mode.choices, blank=True)
    measures = models.JSONField(default=dict, blank=True)  # what the rater used
    # The tutor's record_probe call for this answer, if it made one (blank: it did not).
    call_id = models.CharField(max_length=64, blank=True)
    tutor_level = models.CharField(max_length=2, choices=CEFRLevel.choices, blank=True)
    tutor_outcome = models.CharField(max_length=12, choices=Outcome.choices, blank=True)
    tutor_evidence = models.TextField(blank=True)
    disagreement = models.BooleanField(default=False, help_text="The tutor's opinion differs from the rater's.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self):
        return f"{self.level} {self.outcome}"


class Assessment(models.Model):
    """The CEFR rating of a session, persisted the moment placement ends."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending (grading)"
        GRADED = "graded", "Graded"
        DELIVERED = "delivered", "Delivered to learner"
        DELIVERY_FAILED = "delivery_failed", "Delivery failed (shown as text)"
        NOT_RATED = "not_rated", "Not rated (too few rated answers)"

    learner = models.ForeignKey(Learner, on_delete=models.CASCADE, related_name="assessments")
    session = models.OneToOneField(TutorSession, on_delete=models.CASCADE, related_name="assessment")
    # The floor placement found; the grader may confirm it, its criteria explain it. Blank only when
    # the status is not_rated: too few rated answers give no level, never a default one.
    level = models.CharField(max_length=2, choices=CEFRLevel.choices, blank=True)
    partial = models.BooleanField(
        default=False, help_text="Placement ended before the ceiling (time cap or the learner left)."
    )
    criteria = models.JSONField(default=dict, blank=True)
    summary = models.TextField(blank=True)
    grader = models.CharField(max_length=32, blank=True)
    # Where the grader disagreed with the floor or the evidence, for a teacher; the level stays the floor.
    grader_level = models.CharField(max_length=2, choices=CEFRLevel.choices, blank=True)
    grader_flag = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    failure_reason = models.TextField(blank=True)
    # The process grading it (host:pid) and since when: exactly one process grades an assessment;
    # a claim not renewed for PARLA_STALE_SECONDS may be taken over (assessments.services.claim).
    claimed_by = models.CharField(max_length=128, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    graded_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    # Teacher review
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    teacher_level = models.CharField(max_length=2, choices=CEFRLevel.choices, blank=True)
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("review_assessment", "Can review assessments (teacher level and notes)")]

    def __str__(self):
        return f"{self.learner}: {self.level} ({self.get_status_display()})"
