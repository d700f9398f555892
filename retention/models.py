from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import DataSubject
from core.datamap import Category


class HoldGround(models.TextChoices):
    # Seed 000 §6: the five grounds on which data may be kept longer than necessary.
    LAW = "law", _("(1) to comply with laws and regulations")
    COURT = "court", _("(2) to comply with a court judgment, ruling or other legal procedure")
    AUTHORITY = "authority", _("(3) at the request of a government authority or authorised organisation")
    DISPUTE = "dispute", _("(4) needed to defend our rights in a dispute or proceedings")
    PROTECTION = "protection", _("(5) to protect the safety or property of a subject or the public")


class LegalHold(models.Model):
    """Data that must be kept despite erasure and retention: of one subject, or of a whole
    category. An active hold blocks erasure of what it covers; erasure plans show it."""

    subject = models.ForeignKey(
        DataSubject, null=True, blank=True, on_delete=models.PROTECT, related_name="legal_holds"
    )
    category = models.CharField(
        _("category"), max_length=40, blank=True, help_text=_("empty: everything of the subject")
    )
    ground = models.CharField(_("ground"), max_length=12, choices=HoldGround.choices)
    reason = models.TextField(_("reason"), help_text=_("no personal data: case numbers, authority, scope"))
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    set_at = models.DateTimeField(auto_now_add=True)
    review_on = models.DateField(_("review on"))
    released_at = models.DateTimeField(_("released at"), null=True, blank=True)
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The day the DPO group was last told that the review date has passed (at most once a day).
    review_alerted_on = models.DateField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("legal hold")
        verbose_name_plural = _("legal holds")
        indexes = [models.Index(fields=["subject", "released_at"], name="hold_subject_active")]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(subject__isnull=True, category=""), name="hold_has_scope"
            )
        ]

    def __str__(self) -> str:
        return f"hold {self.pk} ({self.ground})"


class Erasure(models.Model):
    """One erasure of one subject: the plan staff confirm, then its execution.

    The plan (what will be deleted, anonymised or kept, and why) is fixed when it is made,
    with the primary keys of the subject's rows in each source: a resumed run must not look
    the subject up again by identifiers the run itself has already hashed.
    """

    class Status(models.TextChoices):
        PLANNED = "planned", _("planned: waiting for confirmation")
        CONFIRMED = "confirmed", _("confirmed: queued")
        RUNNING = "running", _("erasing")
        DONE = "done", _("done")
        CANCELLED = "cancelled", _("cancelled")

    class Origin(models.TextChoices):
        REQUEST = "request", _("deletion request")
        CANCELLATION = "cancellation", _("account cancellation")
        RETENTION = "retention", _("retention period ended")
        COMMAND = "command", _("staff command")
        TERMINATION = "termination", _("service termination")

    subject = models.ForeignKey(DataSubject, on_delete=models.PROTECT, related_name="erasures")
    reference = models.CharField(_("reference"), max_length=40, db_index=True, help_text=_("the request"))
    origin = models.CharField(_("origin"), max_length=14, choices=Origin.choices)
    # The Celery task that runs it: the requests app wraps the run with the requester's
    # report and the recipients' notices; retention sweeps use the bare one.
    runner = models.CharField(max_length=100, default="retention.tasks.run_erasure")
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PLANNED)
    plan = models.JSONField(_("plan"), default=dict)
    roots = models.JSONField(default=dict)  # source -> table -> [primary keys]
    report = models.JSONField(_("report"), default=dict, blank=True)
    rows_total = models.PositiveBigIntegerField(default=0)
    rows_done = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    runs = models.PositiveIntegerField(default=0)
    notified_at = models.DateTimeField(null=True, blank=True)
    backups_until = models.DateField(_("backups holding the data roll over by"), null=True, blank=True)

    class Meta:
        verbose_name = _("erasure")
        verbose_name_plural = _("erasures")
        permissions: ClassVar = [("confirm_erasure", _("Can confirm an erasure plan"))]
        indexes = [models.Index(fields=["status", "lease_until"], name="erasure_status_lease")]
        constraints: ClassVar = [
            # One erasure of a person at a time (a deletion request's, the service
            # termination's...): two at once would tell each recipient twice.
            models.UniqueConstraint(
                fields=["subject"],
                condition=models.Q(status__in=["confirmed", "running"]),
                name="erasure_one_active_per_subject",
            )
        ]

    def __str__(self) -> str:
        return f"erasure {self.pk} ({self.reference})"


class ErasureStep(models.Model):
    """Progress through one table: the last primary key done. A batch and its cursor are in
    different databases, so a crash between them repeats one batch, which is harmless
    because every erase operation is idempotent."""

    erasure = models.ForeignKey(Erasure, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField()
    source = models.CharField(max_length=40)
    table = models.CharField(max_length=63)
    cursor = models.JSONField(null=True, blank=True)
    rows_done = models.PositiveBigIntegerField(default=0)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["erasure", "position"]
        constraints = [
            models.UniqueConstraint(fields=["erasure", "source", "table"], name="erasure_step_once")
        ]

    def __str__(self) -> str:
        return f"{self.source}.{self.table}"


class Tombstone(models.Model):
    """What remains of an erased subject: no personal data, only keyed hashes of their
    identifiers and the keys of their rows, so that a restore of an older backup can erase
    them again (replay) and staff can answer "was this person erased, and when"."""

    erasure = models.OneToOneField(Erasure, on_delete=models.PROTECT, related_name="tombstone")
    subject_id_ref = models.PositiveBigIntegerField(db_index=True)  # DataSubject.pk
    key_id = models.UUIDField()
    identifier_hashes = models.JSONField(default=list)  # blind indexes (keyed HMAC)
    roots = models.JSONField(default=dict)
    erased_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = _("tombstone")
        verbose_name_plural = _("tombstones")

    def __str__(self) -> str:
        return f"tombstone {self.pk}"


class Backup(models.Model):
    """One encrypted backup file of one database, in the catalogue.

    The databases backed up together (Quanyi's main database and the product's) share a
    `set_id` and a `taken_at`: the moment read before the first dump started. Every erasure
    sealed after it may be missing from the files, so a restore replays those tombstones; and
    an erased person's data is in every backup taken before the erasure until it expires.
    The key store is never in a backup (see README, "Backups and restore").
    """

    class Status(models.TextChoices):
        TAKEN = "taken", _("taken")
        VERIFIED = "verified", _("verified")
        EXPIRED = "expired", _("expired: being deleted")
        DELETED = "deleted", _("deleted")
        FAILED = "failed", _("failed")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    set_id = models.UUIDField(_("backup set"), db_index=True)
    database = models.CharField(_("database"), max_length=40, help_text=_("the settings.DATABASES alias"))
    engine = models.CharField(_("engine"), max_length=16)
    taken_at = models.DateTimeField(_("taken at"), db_index=True, help_text=_("before the dump started"))
    path = models.CharField(_("file"), max_length=500, blank=True)
    size = models.PositiveBigIntegerField(_("size (bytes)"), default=0)
    sha256 = models.CharField(_("SHA-256 of the file"), max_length=64, blank=True)
    plaintext_sha256 = models.CharField(_("SHA-256 of the dump"), max_length=64, blank=True)
    key_id = models.CharField(_("backup key id"), max_length=16, blank=True)
    expires_at = models.DateTimeField(_("expires at"), db_index=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.TAKEN)
    verified_at = models.DateTimeField(_("verified at"), null=True, blank=True)
    deleted_at = models.DateTimeField(_("deleted at"), null=True, blank=True)
    detail = models.TextField(_("detail"), blank=True, help_text=_("why it failed"))

    class Meta:
        verbose_name = _("backup")
        verbose_name_plural = _("backups")
        ordering = ["-taken_at", "database"]

    def __str__(self) -> str:
        return f"backup {self.database} {self.taken_at:%Y-%m-%d %H:%M} ({self.status})"


class Scope(models.TextChoices):
    """Where a retention rule applies: the product's databases (every table of the data map
    holding the rule's category), or one kind of Quanyi's own records."""

    PRODUCT = "product", _("the product's databases (data map)")
    REQUESTS = "requests", _("Quanyi: data-subject requests")
    VERIFICATION_DOCUMENTS = "verification_documents", _("Quanyi: identity documents of requests")
    CONSENT_EVENTS = "consent_events", _("Quanyi: consent ledger")
    AUDIT_ENTRIES = "audit_entries", _("Quanyi: audit log")


class Trigger(models.TextChoices):
    COLLECTION = "collection", _("collection")
    LAST_ACTIVITY = "last_activity", _("last activity")
    ACCOUNT_CANCELLATION = "account_cancellation", _("account cancellation (the person is erased)")
    REQUEST_CLOSED = "request_closed", _("request closed")


class Action(models.TextChoices):
    DELETE = "delete", _("delete")
    # PIPL Art. 73: only anonymised information stops being personal information.
    ANONYMISE = "anonymise", _("anonymise (per the data map)")
    # PIPL Art. 47: a law requires keeping it; processing stops except storage and security.
    RESTRICT = "restrict", _("restrict (kept by law: storage and security only)")


class RetentionRule(models.Model):
    """How long one category of personal data is kept, counted from what, and what happens
    at the end. The DPO edits the rules (retention.services.rule_save, audited); the daily
    sweep applies them."""

    category = models.CharField(_("category"), max_length=40, choices=Category.choices)
    scope = models.CharField(_("applies to"), max_length=24, choices=Scope.choices, default=Scope.PRODUCT)
    period_days = models.PositiveIntegerField(
        _("period (days)"), validators=[MinValueValidator(1), MaxValueValidator(36525)]
    )
    trigger = models.CharField(_("counted from"), max_length=24, choices=Trigger.choices)
    action = models.CharField(_("at the end"), max_length=12, choices=Action.choices)
    legal_basis = models.TextField(_("legal basis"), help_text=_("why this period: the law or the purpose"))
    active = models.BooleanField(_("active"), default=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(_("updated at"), null=True, blank=True)

    class Meta:
        verbose_name = _("retention rule")
        verbose_name_plural = _("retention rules")
        ordering = ["scope", "category"]
        constraints = [
            models.UniqueConstraint(
                fields=["category", "scope"],
                name="retention_rule_once",
                violation_error_message=_("There is a rule for this category here already: change that one."),
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_category_display()} / {self.get_scope_display()}"

    def clean(self) -> None:
        """What a rule may say depends on where it applies (retention.records)."""
        from retention.records import PRODUCT_ACTIONS, PRODUCT_TRIGGERS, record_kind

        errors: dict[str, Any] = {}
        if not (self.legal_basis or "").strip():
            errors["legal_basis"] = _("Say why this period: the law, or the purpose that needs it.")
        if self.scope == Scope.PRODUCT:
            if self.trigger and self.trigger not in PRODUCT_TRIGGERS:
                errors["trigger"] = _(
                    "In the product's databases the clock starts at each table's timestamp: collection or "
                    "last activity. Cancelled accounts are erased by the cancellation sweep after their "
                    "cooling-off."
                )
            if self.action and self.action not in PRODUCT_ACTIONS:
                errors["action"] = _("Choose delete, anonymise or restrict.")
        elif self.scope:
            kind = record_kind(self.scope)
            if kind is None:
                errors["scope"] = _("These records are not available for retention rules.")
            else:
                if self.category and self.category != kind.category:
                    errors["category"] = _("A rule for these records is about the category %(category)s.") % {
                        "category": Category(kind.category).label
                    }
                if self.trigger and self.trigger not in kind.triggers:
                    errors["trigger"] = _("For these records the clock starts at: %(allowed)s.") % {
                        "allowed": ", ".join(str(Trigger(t).label) for t in sorted(kind.triggers))
                    }
                if self.action and self.action not in kind.actions:
                    if self.scope == Scope.AUDIT_ENTRIES:
                        errors["action"] = _(
                            "Audit entries are never deleted or restricted: the hash chain is the evidence."
                        )
                    else:
                        errors["action"] = _("For these records the action is: %(allowed)s.") % {
                            "allowed": ", ".join(str(Action(a).label) for a in sorted(kind.actions))
                        }
        if errors:
            raise ValidationError(errors)


class SweepRun(models.Model):
    """One run of the retention sweep (or a dry run): what it did per rule and table."""

    class Status(models.TextChoices):
        RUNNING = "running", _("running")
        DONE = "done", _("done")
        FAILED = "failed", _("failed")

    started_at = models.DateTimeField(_("started at"))
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    dry_run = models.BooleanField(_("dry run"), default=False)
    status = models.CharField(_("status"), max_length=8, choices=Status.choices, default=Status.RUNNING)
    # {"units": {"<category>:<source>.<table>": {"rule", "action", "rows", "status"}}, "children": ...}
    counts = models.JSONField(_("counts"), default=dict, blank=True)
    error = models.CharField(_("error"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("retention sweep")
        verbose_name_plural = _("retention sweeps")
        ordering = ["-started_at", "-pk"]

    def __str__(self) -> str:
        return f"sweep {self.pk}{' (dry run)' if self.dry_run else ''}"


class SweepCursor(models.Model):
    """The sweep's place in one unit of work, a (rule, source, table): claimed with a lease by
    a conditional UPDATE, so two sweeps (or workers on two machines) never work the same unit
    at once, and saved after every batch, so a sweep that dies resumes where it stopped."""

    rule = models.ForeignKey(RetentionRule, on_delete=models.CASCADE, related_name="cursors")
    source = models.CharField(max_length=40)  # a data-map source, or "quanyi"
    table = models.CharField(max_length=63)  # a table of the source, or a Scope
    run = models.ForeignKey(SweepRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    lease_until = models.DateTimeField(null=True, blank=True)
    position = models.JSONField(null=True, blank=True)  # [timestamp, pk] of the last row done
    pass_started_at = models.DateTimeField(null=True, blank=True)
    pass_rows = models.PositiveBigIntegerField(default=0)  # rows changed in the current pass
    finished_at = models.DateTimeField(null=True, blank=True)  # of the last complete pass

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "source", "table"], name="sweep_cursor_once")]

    def __str__(self) -> str:
        return f"{self.rule_id}:{self.source}.{self.table}"


class ChildDataFinding(models.Model):
    """A data subject under 14 (seed 000 §5, PIPL Art. 31) with no active guardian consent,
    found by the sweep: staff delete the data or record the guardian's consent."""

    class Resolution(models.TextChoices):
        GUARDIAN_CONSENT = "guardian_consent", _("guardian consent recorded")
        TURNED_14 = "turned_14", _("no longer under 14")
        ERASED = "erased", _("the person's data was erased")
        STAFF = "staff", _("closed by staff")

    subject = models.ForeignKey(DataSubject, on_delete=models.PROTECT, related_name="child_findings")
    found_at = models.DateTimeField(_("found at"))
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    resolution = models.CharField(_("resolution"), max_length=16, choices=Resolution.choices, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = _("child's data without guardian consent")
        verbose_name_plural = _("children's data without guardian consent")
        ordering = ["resolved_at", "found_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["subject"],
                condition=models.Q(resolved_at__isnull=True),
                name="child_finding_open_once",
            )
        ]

    def __str__(self) -> str:
        return f"finding {self.pk} ({self.subject})"


class ServiceTermination(models.Model):
    """The service stops operating (seed 000 §6): everyone is told, then after the stop date
    every person's data is erased (retention.termination). One at a time."""

    class Status(models.TextChoices):
        ANNOUNCED = "announced", _("announced: notices being sent")
        NOTIFIED = "notified", _("notified: waiting for the stop date")
        ERASING = "erasing", _("erasing")
        DONE = "done", _("done")
        CANCELLED = "cancelled", _("cancelled")

    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.ANNOUNCED)
    # True while announced, notified or erasing: the partial unique constraint allows one.
    active = models.BooleanField(default=True, editable=False)
    stop_on = models.DateField(_("the service stops on"), help_text=_("erasure starts on this day"))
    notice_days = models.PositiveIntegerField(_("notice period (days)"))
    reason = models.TextField(_("reason"), help_text=_("public: shown in the announcement and the e-mail"))
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(_("started at"), auto_now_add=True)
    notified_at = models.DateTimeField(_("notices sent at"), null=True, blank=True)
    erasing_at = models.DateTimeField(_("erasure started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    cancelled_at = models.DateTimeField(_("cancelled at"), null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The erasure walks subjects in id order: the last one handled, and a lease so two jobs
    # never walk at once (a crashed one is taken over when its lease runs out).
    subjects_after = models.BigIntegerField(default=0, editable=False)
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    # Progress, recounted from the erasures at every batch (never incremented: a repeated
    # batch does not count twice).
    subjects_erased = models.PositiveIntegerField(_("people erased"), default=0)
    subjects_held = models.PositiveIntegerField(_("people kept under a legal hold"), default=0)
    subjects_remaining = models.PositiveIntegerField(_("people remaining"), default=0)
    report = models.JSONField(_("final report"), default=dict, blank=True)

    class Meta:
        verbose_name = _("service termination")
        verbose_name_plural = _("service terminations")
        ordering = ["-started_at", "-id"]
        permissions: ClassVar = [
            ("start_termination", _("Can start or cancel the termination of the service"))
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["active"], condition=models.Q(active=True), name="termination_one_active"
            )
        ]

    def __str__(self) -> str:
        return f"service termination {self.pk} ({self.stop_on})"

    @property
    def reference(self) -> str:
        """The erasures' reference: each subject's erasure is found again by it."""
        return f"TERMINATION-{self.pk}"
