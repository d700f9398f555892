from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import DataSubject
from core.fields import BlindIndexField, EncryptedTextField

# --- The working-day calendar ----------------------------------------------------------------


class CalendarYear(models.Model):
    """A year whose official schedule is loaded. Years without a row are counted Monday to
    Friday and every deadline that touches them is provisional."""

    year = models.PositiveSmallIntegerField(primary_key=True)
    source = models.CharField(_("source"), max_length=100)
    loaded_at = models.DateTimeField(_("loaded at"), auto_now=True)

    class Meta:
        ordering = ["-year"]
        verbose_name = _("calendar year")
        verbose_name_plural = _("calendar years")

    def __str__(self) -> str:
        return str(self.year)


class CalendarDay(models.Model):
    """An exception to Monday–Friday: a public holiday, or an adjusted working day (调休)."""

    class Kind(models.TextChoices):
        HOLIDAY = "holiday", _("public holiday")
        WORKDAY = "workday", _("adjusted working day")

    date = models.DateField(_("date"), primary_key=True)
    kind = models.CharField(_("kind"), max_length=8, choices=Kind.choices)
    name = models.CharField(_("name"), max_length=100)

    class Meta:
        ordering = ["date"]
        verbose_name = _("calendar day")
        verbose_name_plural = _("calendar days")

    def __str__(self) -> str:
        return f"{self.date} {self.get_kind_display()}"


# --- Requests -------------------------------------------------------------------------------


class RequestType(models.TextChoices):
    ACCESS = "access", _("Access (查阅)")
    COPY = "copy", _("Copy (复制)")
    PORTABILITY = "portability", _("Portability (转移)")
    CORRECTION = "correction", _("Correction or completion (更正/补充)")
    DELETION = "deletion", _("Deletion (删除)")
    CONSENT_WITHDRAWAL = "consent_withdrawal", _("Change the scope of consent (改变授权同意的范围)")
    RESTRICTION = "restriction", _("Restrict or object to processing (限制或拒绝处理)")
    CANCELLATION = "cancellation", _("Cancel the account (注销账户)")
    EXPLANATION = "explanation", _("Explain processing rules or automated decisions (解释说明)")


class Status(models.TextChoices):
    SUBMITTED = "submitted", _("submitted")
    AWAITING_VERIFICATION = "awaiting_verification", _("awaiting identity verification")
    INFO_REQUESTED = "info_requested", _("more information needed")
    VERIFIED = "verified", _("identity verified")
    IN_PROGRESS = "in_progress", _("in progress")
    COMPLETED = "completed", _("completed")
    REFUSED = "refused", _("refused")
    WITHDRAWN = "withdrawn", _("withdrawn")


OPEN_STATUSES = (
    Status.SUBMITTED,
    Status.AWAITING_VERIFICATION,
    Status.INFO_REQUESTED,
    Status.VERIFIED,
    Status.IN_PROGRESS,
)
CLOSED_STATUSES = (Status.COMPLETED, Status.REFUSED, Status.WITHDRAWN)
CLOCK_RUNNING = (Status.VERIFIED, Status.IN_PROGRESS)


class OnBehalf(models.TextChoices):
    SELF = "self", _("myself")
    GUARDIAN = "guardian", _("a child under 14 in my guardianship")
    RELATIVE = "relative", _("a deceased close relative (PIPL Art. 49)")
    AGENT = "agent", _("someone who authorised me")


class RefusalGround(models.TextChoices):
    # Seed 000 §4.7 (1)–(6), and identity that could not be verified.
    NATIONAL_SECURITY = (
        "national_security",
        _("(1) directly related to national security or national defence"),
    )
    PUBLIC_INTEREST = (
        "public_interest",
        _("(2) directly related to public safety, public health or major public interests"),
    )
    CRIMINAL_PROCEEDINGS = (
        "criminal_proceedings",
        _("(3) directly related to criminal investigation, prosecution, trial or enforcement of judgments"),
    )
    ABUSE = "abuse", _("(4) sufficient evidence of subjective malice or abuse of rights")
    HARM_TO_OTHERS = (
        "harm_to_others",
        _("(5) responding would seriously harm the lawful rights of you or other persons or organisations"),
    )
    TRADE_SECRET = "trade_secret", _("(6) involves trade secrets")
    IDENTITY_UNVERIFIED = "identity_unverified", _("your identity could not be verified")


class VerificationMethod(models.TextChoices):
    REAUTHENTICATION = "reauthentication", _("signed in and recently reauthenticated")
    EMAIL_CODE = "email_code", _("e-mail code")
    DOCUMENTS = "documents", _("identity documents checked by staff")
    STAFF = "staff", _("verified by staff by other means")


class DataSubjectRequest(models.Model):
    reference = models.CharField(_("reference"), max_length=20, unique=True)
    type = models.CharField(_("type"), max_length=24, choices=RequestType.choices)
    status = models.CharField(_("status"), max_length=24, choices=Status.choices, default=Status.SUBMITTED)
    subject = models.ForeignKey(DataSubject, on_delete=models.PROTECT, related_name="requests")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="dsar_requests",
        help_text=_("the account that submitted it, if any"),
    )
    on_behalf = models.CharField(
        _("on behalf of"), max_length=12, choices=OnBehalf.choices, default=OnBehalf.SELF
    )
    requester_name = EncryptedTextField(_("requester name"))
    requester_email = EncryptedTextField(_("requester e-mail"))
    requester_email_index = BlindIndexField(source="requester_email", kind="email")
    requester_phone = EncryptedTextField(_("requester phone"))
    requester_phone_index = BlindIndexField(source="requester_phone", kind="phone")
    relationship = models.CharField(_("relationship to the subject"), max_length=100, blank=True)
    details = EncryptedTextField(_("what the request is about"))
    language = models.CharField(
        _("language"), max_length=10, choices=settings.LANGUAGES, default=settings.LANGUAGE_CODE
    )

    submitted_at = models.DateTimeField(_("submitted at"), auto_now_add=True)
    contact_verified_at = models.DateTimeField(
        _("e-mail confirmed at"),
        null=True,
        blank=True,
        help_text=_("the requester entered the e-mailed code"),
    )
    verified_at = models.DateTimeField(_("verified at"), null=True, blank=True)
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    verification_method = models.CharField(max_length=20, choices=VerificationMethod.choices, blank=True)
    due_date = models.DateField(_("due date"), null=True, blank=True)
    due_at = models.DateTimeField(_("due at"), null=True, blank=True)
    deadline_provisional = models.BooleanField(_("provisional deadline"), default=False)
    deadline_missing_year = models.PositiveSmallIntegerField(null=True, blank=True)

    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_requests",
        verbose_name=_("assignee"),
    )
    started_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    answer = EncryptedTextField(_("answer to the requester"))
    refusal_ground = models.CharField(
        _("refusal ground"), max_length=24, choices=RefusalGround.choices, blank=True
    )
    refusal_explanation = EncryptedTextField(_("explanation of the refusal"))

    class Meta:
        verbose_name = _("data-subject request")
        verbose_name_plural = _("data-subject requests")
        permissions: ClassVar = [
            ("work_request", _("Can work requests: verify, ask, start, answer, refuse")),
            ("reassign_request", _("Can assign requests to any agent")),
        ]
        indexes = [
            models.Index(fields=["status", "due_at"], name="dsar_status_due"),
            models.Index(fields=["due_at", "id"], name="dsar_due"),
            models.Index(fields=["assignee", "status"], name="dsar_assignee_status"),
            models.Index(fields=["subject", "submitted_at"], name="dsar_subject"),
            models.Index(fields=["status", "closed_at"], name="dsar_status_closed"),
            models.Index(
                fields=["deadline_provisional"],
                name="dsar_provisional",
                condition=models.Q(deadline_provisional=True),
            ),
        ]

    def __str__(self) -> str:
        return self.reference

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


class RequestCounter(models.Model):
    """Per-year sequence behind reference numbers (DSR-2026-000123): incremented under a row
    lock, never reused."""

    year = models.PositiveSmallIntegerField(primary_key=True)
    last = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.year}: {self.last}"


class RequestMessage(models.Model):
    """A message on a request: from the requester, to the requester, or an internal note."""

    class Kind(models.TextChoices):
        FROM_REQUESTER = "from_requester", _("from the requester")
        TO_REQUESTER = "to_requester", _("to the requester")
        INTERNAL = "internal", _("internal note")

    request = models.ForeignKey(DataSubjectRequest, on_delete=models.CASCADE, related_name="messages")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    body = EncryptedTextField(_("message"), key_from="request.subject.key_id")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.request_id}:{self.kind}"


class VerificationDocument(models.Model):
    """Proof of identity or of authority to act for someone. The content is encrypted under
    the subject's key; only roles with `view_verification` may open it, and each view is
    audited."""

    request = models.ForeignKey(DataSubjectRequest, on_delete=models.CASCADE, related_name="documents")
    filename = EncryptedTextField(key_from="request.subject.key_id")
    content_type = models.CharField(max_length=40)
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    content = EncryptedTextField(key_from="request.subject.key_id")  # base64 of the file
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        permissions: ClassVar = [("view_verification", _("Can open identity verification documents"))]
        verbose_name = _("verification document")

    def __str__(self) -> str:
        return f"document {self.pk} of {self.request_id}"


class EmailChallenge(models.Model):
    """A 6-digit code e-mailed to prove control of an address. Only its keyed hash is kept."""

    request = models.ForeignKey(DataSubjectRequest, on_delete=models.CASCADE, related_name="challenges")
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"challenge {self.pk}"


class Reminder(models.Model):
    """One row per request and threshold: the unique constraint is what makes a reminder go out
    once, however often (or however concurrently) the sweep runs."""

    class Threshold(models.TextChoices):
        FIVE = "5", _("5 working days left")
        TWO = "2", _("2 working days left")
        ONE = "1", _("1 working day left")
        OVERDUE = "overdue", _("overdue")

    request = models.ForeignKey(DataSubjectRequest, on_delete=models.CASCADE, related_name="reminders")
    threshold = models.CharField(max_length=8, choices=Threshold.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["request", "threshold"], name="dsar_reminder_once")]

    def __str__(self) -> str:
        return f"{self.request_id}:{self.threshold}"


class CorrectionItem(models.Model):
    """One new value a subject proposes for one correctable field (PIPL Art. 46; seed 000
    §4.2): in their Quanyi profile (`target` "quanyi", table "profile") or in a product source
    (`target` the source code, `table` and `column` from its data-map file, `row` the primary
    key when the table holds several rows per person). Values are encrypted under the
    subject's key; staff approve (the value is written at once) or reject with a reason the
    requester reads."""

    QUANYI = "quanyi"
    PROFILE = "profile"

    class Decision(models.TextChoices):
        PENDING = "pending", _("pending")
        APPROVED = "approved", _("approved")
        REJECTED = "rejected", _("rejected")

    request = models.ForeignKey(DataSubjectRequest, on_delete=models.CASCADE, related_name="corrections")
    target = models.CharField(_("where"), max_length=40)
    table = models.CharField(_("table"), max_length=63)
    column = models.CharField(_("field"), max_length=63)
    row = models.CharField(_("record"), max_length=64, null=True, blank=True)
    current_value = EncryptedTextField(_("value when proposed"), key_from="request.subject.key_id")
    proposed_value = EncryptedTextField(_("proposed value"), key_from="request.subject.key_id")
    reason = EncryptedTextField(_("the requester's reason"), key_from="request.subject.key_id")
    decision = models.CharField(
        _("decision"), max_length=8, choices=Decision.choices, default=Decision.PENDING
    )
    decision_reason = EncryptedTextField(
        _("reason for the decision (the requester reads it)"), key_from="request.subject.key_id"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    applied_at = models.DateTimeField(_("applied at"), null=True, blank=True)
    rows_changed = models.PositiveIntegerField(_("records changed"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["request", "id"]
        verbose_name = _("correction")
        verbose_name_plural = _("corrections")
        indexes = [models.Index(fields=["request", "decision"], name="dsar_correction_decision")]

    def __str__(self) -> str:
        return f"{self.request_id}:{self.target}.{self.table}.{self.column}"

    @property
    def is_pending(self) -> bool:
        return self.decision == self.Decision.PENDING

    @property
    def awaits_apply(self) -> bool:
        return self.decision == self.Decision.APPROVED and self.applied_at is None


# --- Account cancellation -----------------------------------------------------------------------


class AccountCancellation(models.Model):
    """The cooling-off of a self-service account cancellation (seed 000 §4.5).

    The subject confirmed at `confirmed_at`; their cancellation request is verified then (the
    15-working-day clock runs). Until `scheduled_for` signing in or the undo button undoes
    it (`undone_at`). After it, the sweep claims the row (`started_at`) and plans and
    confirms the erasure; a legal hold that blocks the erasure leaves it to staff
    (`blocked_at`). Every claim is a conditional UPDATE on these timestamps, so the undo and
    the sweep never both win.
    """

    class Via(models.TextChoices):
        LOGIN = "login", _("signed in during the cooling-off")
        BUTTON = "button", _("undo button in the portal")
        API = "api", _("undo through the API")
        WITHDRAWN = "withdrawn", _("the request was withdrawn")

    request = models.OneToOneField(
        DataSubjectRequest, on_delete=models.CASCADE, related_name="cancellation", verbose_name=_("request")
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="account_cancellations",
        verbose_name=_("account"),
    )
    confirmed_at = models.DateTimeField(_("confirmed at"))
    scheduled_for = models.DateTimeField(_("deletion starts at"), help_text=_("end of the cooling-off"))
    undone_at = models.DateTimeField(_("undone at"), null=True, blank=True)
    undone_via = models.CharField(_("undone by"), max_length=10, choices=Via.choices, blank=True)
    started_at = models.DateTimeField(
        _("deletion started at"), null=True, blank=True, help_text=_("erasure planned and confirmed")
    )
    blocked_at = models.DateTimeField(
        _("blocked at"), null=True, blank=True, help_text=_("a legal hold blocks the erasure: staff decide")
    )

    class Meta:
        verbose_name = _("account cancellation")
        verbose_name_plural = _("account cancellations")
        indexes = [
            # What the sweep reads: only schedules still waiting, by due time.
            models.Index(
                fields=["scheduled_for"],
                name="dsar_cancellation_due",
                condition=models.Q(started_at__isnull=True, undone_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"cancellation of {self.request_id}"

    @property
    def is_waiting(self) -> bool:
        """In the cooling-off, or stopped by a legal hold: nothing is erased yet."""
        return self.undone_at is None and (self.started_at is None or self.blocked_at is not None)


# --- Access packages ------------------------------------------------------------------------

EXPORT_TYPES = (RequestType.ACCESS, RequestType.COPY, RequestType.PORTABILITY)


class ExportStatus(models.TextChoices):
    QUEUED = "queued", _("queued")
    BUILDING = "building", _("being prepared")
    READY = "ready", _("ready to download")
    FAILED = "failed", _("failed")
    EXPIRED = "expired", _("expired")


LIVE_EXPORT_STATUSES = (ExportStatus.QUEUED, ExportStatus.BUILDING, ExportStatus.READY)


class DataExport(models.Model):
    """One access package (a ZIP of data.json, CSV files and index.html) for a request.

    A request may have several over time (a failed build, or an expired package followed by a
    new one), but at most one live (queued, building or ready) at a time: the partial unique
    constraint makes starting twice return the same package. A crashed build is the same row
    built again (`attempts` counts the claims). The file under QUANYI_EXPORT_DIR is encrypted
    with a random file key that is stored only wrapped under the subject's key, so erasing
    the subject (destroying their key) makes the package unreadable too."""

    request = models.ForeignKey(DataSubjectRequest, on_delete=models.PROTECT, related_name="exports")
    subject = models.ForeignKey(DataSubject, on_delete=models.PROTECT, related_name="exports")
    status = models.CharField(
        _("status"), max_length=10, choices=ExportStatus.choices, default=ExportStatus.QUEUED
    )
    language = models.CharField(
        _("language"), max_length=10, choices=settings.LANGUAGES, default=settings.LANGUAGE_CODE
    )
    attempts = models.PositiveSmallIntegerField(_("build attempts"), default=0)
    lease_until = models.DateTimeField(
        _("claimed until"),
        null=True,
        blank=True,
        help_text=_("a build that stops renewing this is taken over by the next worker"),
    )
    rows_done = models.PositiveBigIntegerField(_("rows written"), default=0)
    rows_total = models.PositiveBigIntegerField(_("rows expected"), default=0)
    step = models.CharField(_("current step"), max_length=120, blank=True)
    file_path = models.CharField(
        _("file"), max_length=255, blank=True, help_text=_("relative to QUANYI_EXPORT_DIR")
    )
    size = models.PositiveBigIntegerField(_("size of the ZIP (bytes)"), null=True, blank=True)
    sha256 = models.CharField(_("SHA-256 of the ZIP"), max_length=64, blank=True)
    wrapped_key = models.TextField(blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    download_count = models.PositiveIntegerField(_("downloads"), default=0)
    last_downloaded_at = models.DateTimeField(_("last downloaded at"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("access package")
        verbose_name_plural = _("access packages")
        indexes = [models.Index(fields=["status", "expires_at"], name="dsar_export_status_expires")]
        constraints = [
            models.UniqueConstraint(
                fields=["request"],
                condition=models.Q(status__in=["queued", "building", "ready"]),
                name="dsar_export_one_live",
            )
        ]

    def __str__(self) -> str:
        return f"export {self.pk} of {self.request_id}"

    @property
    def percent(self) -> int:
        """Progress for a person: 100 only once the package is ready."""
        if self.status == ExportStatus.READY:
            return 100
        if self.status != ExportStatus.BUILDING or not self.rows_total:
            return 0
        return min(99, int(self.rows_done * 100 / self.rows_total))

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_EXPORT_STATUSES
