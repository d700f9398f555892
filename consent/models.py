from __future__ import annotations

import uuid
from typing import Any, NoReturn

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import DataSubject
from core.datamap import Category
from core.fields import BlindIndexField, EncryptedTextField


class ChangeKind(models.TextChoices):
    # Seed 000 §8 (1)–(6): what makes a policy change material.
    SERVICE_MODEL = (
        "service_model",
        _("(1) major change of the service model: purposes, types or use of personal information"),
    )
    OWNERSHIP = "ownership", _("(2) major change of ownership or organisation")
    RECIPIENTS = "recipients", _("(3) change of the main recipients of sharing, transfer or disclosure")
    RIGHTS = "rights", _("(4) major change of your rights and how to exercise them")
    CONTACT = "contact", _("(5) change of the department responsible, contact or complaint channel")
    HIGH_RISK = "high_risk", _("(6) an impact assessment shows a high risk")


class PolicyVersion(models.Model):
    version = models.PositiveIntegerField(_("version"), unique=True)
    title_zh = models.CharField(_("title (Chinese)"), max_length=200)
    title_en = models.CharField(_("title (English)"), max_length=200)
    body_zh = models.TextField(_("text (Chinese)"))
    body_en = models.TextField(_("text (English)"))
    summary_zh = models.TextField(_("change summary (Chinese)"), blank=True)
    summary_en = models.TextField(_("change summary (English)"), blank=True)
    material = models.BooleanField(_("material change"), default=False)
    change_kind = models.CharField(_("kind of change"), max_length=16, choices=ChangeKind.choices, blank=True)
    effective_at = models.DateTimeField(_("effective from"))
    published_at = models.DateTimeField(_("published at"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        verbose_name = _("privacy policy version")
        verbose_name_plural = _("privacy policy versions")

    def __str__(self) -> str:
        return f"v{self.version}"

    def localised(self, field: str, language: str) -> str:
        return str(getattr(self, f"{field}_{'zh' if language.startswith('zh') else 'en'}"))


class LegalBasis(models.TextChoices):
    # PIPL Art. 13.
    CONSENT = "consent", _("consent")
    CONTRACT = "contract", _("necessary for a contract with the individual")
    LEGAL_DUTY = "legal_duty", _("necessary for a legal duty")
    VITAL_INTERESTS = "vital_interests", _("necessary to protect life, health or property in an emergency")
    PUBLIC_INTEREST = "public_interest", _("news reporting or supervision in the public interest")
    PUBLIC_INFORMATION = "public_information", _("information already lawfully public")


class Purpose(models.Model):
    code = models.SlugField(_("code"), max_length=64, unique=True)
    name_zh = models.CharField(_("name (Chinese)"), max_length=200)
    name_en = models.CharField(_("name (English)"), max_length=200)
    description_zh = models.TextField(_("description (Chinese)"))
    description_en = models.TextField(_("description (English)"))
    legal_basis = models.CharField(
        _("legal basis"), max_length=24, choices=LegalBasis.choices, default=LegalBasis.CONSENT
    )
    required = models.BooleanField(
        _("required for the service"),
        default=False,
        help_text=_(
            "refusing it means the service cannot be provided; optional purposes never cost the service"
        ),
    )
    sensitive = models.BooleanField(
        _("sensitive personal information"),
        default=False,
        help_text=_("needs separate consent (PIPL Art. 29)"),
    )
    categories = models.JSONField(_("categories of personal information"), default=list, blank=True)
    recipients = models.JSONField(_("recipients it shares with"), default=list, blank=True)
    shares_with = models.ManyToManyField(
        "core.Recipient",
        blank=True,
        related_name="purposes",
        verbose_name=_("recipients in the register"),
        help_text=_("told when a subject withdraws consent to this purpose"),
    )
    retention = models.CharField(_("retention"), max_length=200, blank=True)
    marketing = models.BooleanField(_("marketing (one-click unsubscribe)"), default=False)
    active = models.BooleanField(_("active"), default=True)
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["order", "code"]
        verbose_name = _("purpose")
        verbose_name_plural = _("purposes")

    def __str__(self) -> str:
        return self.code

    def localised(self, field: str, language: str) -> str:
        return str(getattr(self, f"{field}_{'zh' if language.startswith('zh') else 'en'}"))

    @property
    def needs_consent(self) -> bool:
        return self.legal_basis == LegalBasis.CONSENT


class ConsentEventQuerySet(models.QuerySet["ConsentEvent"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise RuntimeError("The consent ledger is append-only.")

    def delete(self) -> NoReturn:  # type: ignore[override]
        raise RuntimeError("The consent ledger is append-only.")


class ConsentEvent(models.Model):
    """One line of the append-only consent ledger. Current state is derived from it (and
    kept in ConsentState in the same transaction for fast reads)."""

    class Action(models.TextChoices):
        GRANT = "grant", _("granted")
        WITHDRAW = "withdraw", _("withdrawn")
        RENEW = "renew", _("renewed")
        EXPIRE = "expire", _("expired")
        DECLINE = "decline", _("declined")

    class Channel(models.TextChoices):
        WEB = "web", _("web portal")
        API = "api", _("API")
        STAFF = "staff", _("staff on the subject's behalf")
        GUARDIAN = "guardian", _("guardian")
        EMAIL = "email", _("e-mail link")
        SYSTEM = "system", _("system")

    receipt_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    subject = models.ForeignKey(DataSubject, on_delete=models.PROTECT, related_name="consent_events")
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="events")
    policy_version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=10, choices=Action.choices)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    separate = models.BooleanField(default=False, help_text=_("a separate consent for sensitive information"))
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(_("reason (staff or guardian)"), max_length=300, blank=True)
    evidence_ip = models.CharField(max_length=48, blank=True, help_text=_("truncated: /24 or /48"))
    evidence_user_agent = models.CharField(max_length=200, blank=True)
    occurred_at = models.DateTimeField(db_index=True)

    objects = ConsentEventQuerySet.as_manager()

    class Meta:
        ordering = ["occurred_at", "id"]
        indexes = [models.Index(fields=["subject", "purpose", "occurred_at"], name="consent_ledger_lookup")]
        verbose_name = _("consent event")
        verbose_name_plural = _("consent ledger")

    def __str__(self) -> str:
        return f"{self.action} {self.purpose_id} @ {self.occurred_at:%Y-%m-%d}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise RuntimeError("The consent ledger is append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError("The consent ledger is append-only.")

    @property
    def grants(self) -> bool:
        return self.action in (self.Action.GRANT, self.Action.RENEW)


class ConsentState(models.Model):
    """The current answer per subject and purpose, maintained with each event: a primary-key
    read instead of a scan of the ledger."""

    subject = models.ForeignKey(DataSubject, on_delete=models.CASCADE, related_name="+")
    purpose = models.ForeignKey(Purpose, on_delete=models.CASCADE, related_name="+")
    granted = models.BooleanField()
    separate = models.BooleanField(default=False)
    event = models.ForeignKey(ConsentEvent, on_delete=models.PROTECT, related_name="+")
    since = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["subject", "purpose"], name="consent_state_one")]
        verbose_name = _("current consent")

    def __str__(self) -> str:
        return f"{self.subject_id}/{self.purpose_id}={self.granted}"


class GuardianConsent(models.Model):
    """A guardian's consent for a child under 14 (seed 000 §5, PIPL Art. 31)."""

    class Verification(models.TextChoices):
        DOCUMENTS = "documents", _("documents checked by staff")
        IN_PERSON = "in_person", _("in person at the clinic")
        ACCOUNT = "account", _("the guardian's own verified account")

    subject = models.ForeignKey(DataSubject, on_delete=models.PROTECT, related_name="guardian_consents")
    guardian_name = EncryptedTextField(_("guardian name"))
    relationship = models.CharField(_("relationship"), max_length=50)
    guardian_contact = EncryptedTextField(_("guardian contact"))
    guardian_contact_index = BlindIndexField(source="guardian_contact", kind="email")
    guardian_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="wards"
    )
    verification = models.CharField(_("how it was verified"), max_length=16, choices=Verification.choices)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    recorded_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("guardian consent")

    def __str__(self) -> str:
        return f"guardian of {self.subject_id}"


class PolicyResponse(models.Model):
    """A subject's answer to the notice of a material policy change (seed 000 §8)."""

    class Decision(models.TextChoices):
        ACCEPT = "accept", _("accepted")
        DECLINE = "decline", _("declined")

    subject = models.ForeignKey(DataSubject, on_delete=models.PROTECT, related_name="policy_responses")
    policy_version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="responses")
    decision = models.CharField(max_length=8, choices=Decision.choices)
    at = models.DateTimeField()
    evidence_ip = models.CharField(max_length=48, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subject", "policy_version"], name="consent_policy_response_once")
        ]
        verbose_name = _("policy notice response")

    def __str__(self) -> str:
        return f"{self.subject_id} {self.decision} v{self.policy_version_id}"


class ApiKey(models.Model):
    """A product service account's key for the consent-check API. Only a hash is stored."""

    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(max_length=12, unique=True)
    key_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("API key")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


# --- Notices to individuals: material policy changes and security incidents ------------------------


class SecurityIncident(models.Model):
    """A personal-information security incident and what individuals are told about it
    (seed 004 §4(7), PIPL Art. 57): what happened, the information concerned, the possible
    impact, the measures taken, advice to individuals, remedies and a contact. Texts are in
    Chinese and English, like the privacy policy, so each person reads their own language. A
    draft may be incomplete while the incident is investigated; notices need every part
    (consent.incidents)."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("draft")
        NOTIFIED = "notified", _("notified")
        CLOSED = "closed", _("closed")

    title_zh = models.CharField(_("title (Chinese)"), max_length=200)
    title_en = models.CharField(_("title (English)"), max_length=200, blank=True)
    what_happened_zh = models.TextField(_("what happened (Chinese)"), blank=True)
    what_happened_en = models.TextField(_("what happened (English)"), blank=True)
    occurred_at = models.DateTimeField(_("occurred at"))
    discovered_at = models.DateTimeField(_("discovered at"))
    categories = models.JSONField(_("categories of personal information affected"), default=list, blank=True)
    impact_zh = models.TextField(_("possible impact (Chinese)"), blank=True)
    impact_en = models.TextField(_("possible impact (English)"), blank=True)
    measures_zh = models.TextField(_("measures taken or to be taken (Chinese)"), blank=True)
    measures_en = models.TextField(_("measures taken or to be taken (English)"), blank=True)
    advice_zh = models.TextField(_("advice to individuals (Chinese)"), blank=True)
    advice_en = models.TextField(_("advice to individuals (English)"), blank=True)
    remedies_zh = models.TextField(_("remedies (Chinese)"), blank=True)
    remedies_en = models.TextField(_("remedies (English)"), blank=True)
    contact = models.CharField(
        _("contact"),
        max_length=300,
        blank=True,
        help_text=_("How affected people reach us: e-mail address, phone number (shown as written)."),
    )
    reported_to_regulator_at = models.DateTimeField(_("reported to the regulator at"), null=True, blank=True)
    regulator = models.CharField(_("regulator"), max_length=200, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.DRAFT)
    announced_at = models.DateTimeField(
        _("public announcement since"),
        null=True,
        blank=True,
        help_text=_("Published on the public incidents page, for when telling each person is impracticable."),
    )
    notified_at = models.DateTimeField(_("individual notices started at"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    subjects: models.ManyToManyField[DataSubject, IncidentSubject] = models.ManyToManyField(
        DataSubject,
        through="IncidentSubject",
        related_name="security_incidents",
        verbose_name=_("affected people"),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-discovered_at", "-id"]
        verbose_name = _("security incident")
        verbose_name_plural = _("security incidents")

    def __str__(self) -> str:
        return f"INC-{self.pk:04d}" if self.pk else "INC-new"

    def localised(self, field: str, language: str) -> str:
        return str(getattr(self, f"{field}_{'zh' if language.startswith('zh') else 'en'}"))

    def clean(self) -> None:
        errors: dict[str, Any] = {}
        categories = self.categories
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            errors["categories"] = _("Give a list of category codes.")
        elif unknown := sorted(set(categories) - set(Category.values)):
            errors["categories"] = _("Unknown categories: %(codes)s.") % {"codes": ", ".join(unknown)}
        if self.occurred_at and self.discovered_at and self.discovered_at < self.occurred_at:
            errors["discovered_at"] = _("An incident cannot be discovered before it happened.")
        if self.reported_to_regulator_at:
            if self.discovered_at and self.reported_to_regulator_at < self.discovered_at:
                errors["reported_to_regulator_at"] = _("It cannot be reported before it was discovered.")
            if not self.regulator.strip():
                errors["regulator"] = _("Name the regulator it was reported to.")
        elif self.regulator.strip():
            errors["reported_to_regulator_at"] = _("Say when it was reported to the regulator.")
        if errors:
            raise ValidationError(errors)


class IncidentSubject(models.Model):
    """A person affected by a security incident."""

    incident = models.ForeignKey(SecurityIncident, on_delete=models.PROTECT, related_name="affected")
    subject = models.ForeignKey(DataSubject, on_delete=models.PROTECT, related_name="+")
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["incident", "subject"], name="consent_incident_subject_once")
        ]
        verbose_name = _("affected person")
        verbose_name_plural = _("affected people")

    def __str__(self) -> str:
        return f"{self.incident_id}/{self.subject_id}"


class NoticeCampaign(models.Model):
    """One e-mail notice to many people, sent in batches (see consent.campaigns). The totals
    are kept with each delivery's change of status, in the same transaction."""

    class Kind(models.TextChoices):
        POLICY_CHANGE = "policy_change", _("material privacy policy change")
        SECURITY_INCIDENT = "security_incident", _("security incident")
        SERVICE_TERMINATION = "service_termination", _("service termination")

    class Status(models.TextChoices):
        DRAFT = "draft", _("draft")
        QUEUED = "queued", _("queued: choosing the people to tell")
        SENDING = "sending", _("sending")
        DONE = "done", _("done")
        CANCELLED = "cancelled", _("cancelled")

    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    policy = models.ForeignKey(
        PolicyVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="campaigns",
        verbose_name=_("policy version"),
    )
    incident = models.ForeignKey(
        SecurityIncident,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="campaigns",
        verbose_name=_("security incident"),
    )
    termination = models.ForeignKey(
        "retention.ServiceTermination",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="campaigns",
        verbose_name=_("service termination"),
    )
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.DRAFT)
    targeted = models.PositiveIntegerField(_("targeted"), default=0)
    sent = models.PositiveIntegerField(_("sent"), default=0)
    failed = models.PositiveIntegerField(_("failed"), default=0)
    interrupted = models.PositiveIntegerField(_("interrupted"), default=0)
    # Targets are chosen in subject-id order; this is how far that has got.
    targets_after = models.BigIntegerField(default=0, editable=False)
    # Whoever holds an unexpired lease runs the campaign's next step; the token hands it over
    # from one batch to the next.
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("notice campaign")
        verbose_name_plural = _("notice campaigns")
        permissions = [("manage_noticecampaign", _("Can cancel campaigns and resend interrupted notices"))]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(
                        kind="policy_change",
                        policy__isnull=False,
                        incident__isnull=True,
                        termination__isnull=True,
                    )
                    | models.Q(
                        kind="security_incident",
                        incident__isnull=False,
                        policy__isnull=True,
                        termination__isnull=True,
                    )
                    | models.Q(
                        kind="service_termination",
                        termination__isnull=False,
                        policy__isnull=True,
                        incident__isnull=True,
                    )
                ),
                name="consent_campaign_about_one_thing",
            ),
            models.UniqueConstraint(
                fields=["policy"],
                condition=models.Q(policy__isnull=False),
                name="consent_campaign_one_per_policy",
            ),
            models.UniqueConstraint(
                fields=["incident"],
                condition=models.Q(incident__isnull=False),
                name="consent_campaign_one_per_incident",
            ),
            models.UniqueConstraint(
                fields=["termination"],
                condition=models.Q(termination__isnull=False),
                name="consent_campaign_one_per_termination",
            ),
        ]

    def __str__(self) -> str:
        about = f"v{self.policy.version}" if self.policy_id and self.policy else str(self.incident or "")
        if self.termination_id and self.termination:
            about = str(self.termination.stop_on)
        return f"{self.get_kind_display()} {about}".strip()

    @property
    def processed(self) -> int:
        return self.sent + self.failed + self.interrupted

    @property
    def percent(self) -> int:
        """How much of the campaign is through, sent or not (0–100)."""
        if not self.targeted:
            return 100 if self.status == self.Status.DONE else 0
        return min(100, self.processed * 100 // self.targeted)


class NoticeDelivery(models.Model):
    """One person's e-mail of a campaign. Written once per (campaign, subject); moved from
    pending to sending by a claim and to sent, failed or interrupted after (consent.campaigns)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        SENDING = "sending", _("sending")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")
        INTERRUPTED = "interrupted", _("interrupted: may or may not have been sent")

    campaign = models.ForeignKey(NoticeCampaign, on_delete=models.PROTECT, related_name="deliveries")
    subject = models.ForeignKey(DataSubject, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.PENDING)
    claimed_at = models.DateTimeField(_("claimed at"), null=True, blank=True)
    # Set, and committed, just before the e-mail is handed to the mail server: a claimed row
    # without it was certainly never sent.
    attempted_at = models.DateTimeField(_("attempted at"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    last_error = models.CharField(_("last error"), max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "subject"], name="consent_delivery_once_per_person")
        ]
        indexes = [models.Index(fields=["campaign", "status", "id"], name="consent_delivery_queue")]
        verbose_name = _("notice delivery")
        verbose_name_plural = _("notice deliveries")

    def __str__(self) -> str:
        return f"{self.campaign_id}/{self.subject_id} {self.status}"
