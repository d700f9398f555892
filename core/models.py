from __future__ import annotations

import uuid
from typing import Any, ClassVar, NoReturn

from django.db import models
from django.utils.translation import gettext_lazy as _


class AuditImmutableError(RuntimeError):
    """The audit log is append-only: entries are never updated or deleted."""


class AuditEntryQuerySet(models.QuerySet["AuditEntry"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AuditImmutableError("Audit entries cannot be updated.")

    def delete(self) -> NoReturn:  # type: ignore[override]
        raise AuditImmutableError("Audit entries cannot be deleted.")

    def bulk_update(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AuditImmutableError("Audit entries cannot be updated.")


class AuditEntry(models.Model):
    """One link of the hash chain. Holds ids, codes and hashes, never personal data in clear,
    so erasing a person never needs to touch (and so never breaks) the chain."""

    seq = models.BigIntegerField(primary_key=True)
    at = models.DateTimeField(db_index=True)
    actor_type = models.CharField(max_length=16)  # user | system | subject | anonymous
    actor_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["seq"]
        indexes = [models.Index(fields=["object_type", "object_id", "seq"])]
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit entries")

    def __str__(self) -> str:
        return f"#{self.seq} {self.action}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AuditImmutableError("Audit entries cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AuditImmutableError("Audit entries cannot be deleted.")


class AuditChainHead(models.Model):
    """A single row: the last sequence number and hash. Locking it serialises writers, and
    comparing it with the last entry detects a truncated chain."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)

    class Meta:
        verbose_name = _("audit chain head")

    def __str__(self) -> str:
        return f"head #{self.seq}"


class SubjectKey(models.Model):
    """A data subject's AES-256 data key, wrapped by a master key. Lives in the key store
    database (see core.routers). Destroyed at erasure: `wrapped` is cleared for good."""

    key_id = models.UUIDField(primary_key=True)
    wrapped = models.BinaryField(null=True)
    master_key_id = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    destroyed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("subject key")

    def __str__(self) -> str:
        return f"key {self.key_id}"


class OutboxMessage(models.Model):
    """A task to run, written in the same transaction as the change that needs it.

    Published right after commit; the relay re-publishes what was never published or never
    finished, so a crash or a broker outage loses no work. Tasks are idempotent."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    task_name = models.CharField(max_length=200)
    kwargs = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    completed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["completed_at", "dispatched_at"], name="core_outbox_pending")]
        verbose_name = _("outbox message")

    def __str__(self) -> str:
        return f"{self.task_name} {self.id}"


class JobState(models.Model):
    """Last run of each scheduled job; the claim in core.jobs makes a second beat harmless."""

    name = models.CharField(max_length=100, primary_key=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_status = models.CharField(max_length=16, blank=True)
    last_detail = models.TextField(blank=True)
    runs = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = _("scheduled job")

    def __str__(self) -> str:
        return self.name


class Heartbeat(models.Model):
    """Written by the worker's heartbeat task: proof that a worker consumes the queue."""

    source = models.CharField(max_length=100, primary_key=True)
    at = models.DateTimeField()
    hostname = models.CharField(max_length=200, blank=True)

    class Meta:
        verbose_name = _("heartbeat")

    def __str__(self) -> str:
        return self.source


# --- The disclosure register: who received whose data, and the notices they are owed -----------
#
# Seed 000 §2 and §4.3, seed 004 §3: every entity that received a person's data is asked to
# delete (correct, stop using) it too. Recipients are organisations, not data subjects.

# Imported here, not at the top: core.fields imports core.crypto, which needs SubjectKey above.
from django.conf import settings  # noqa: E402
from django.core.exceptions import ValidationError  # noqa: E402
from django.core.validators import URLValidator  # noqa: E402

from core.fields import EncryptedTextField  # noqa: E402


def validate_webhook_url(value: str) -> None:
    """http(s) only, and https unless QUANYI_WEBHOOK_ALLOW_HTTP (default: DEBUG): a notice
    names a person and is signed with a shared secret, so it never travels in clear."""
    if not value:
        return
    URLValidator(schemes=["http", "https"], message=_("Enter a valid http(s) URL."))(value)
    if value.lower().startswith("http://") and not settings.QUANYI_WEBHOOK_ALLOW_HTTP:
        raise ValidationError(
            _(
                "The webhook URL must start with https://: notices carry personal data. Plain "
                "http:// is only allowed in development (QUANYI_WEBHOOK_ALLOW_HTTP)."
            ),
            code="insecure_webhook",
        )


class RecipientKind(models.TextChoices):
    # Seed 000 §2.1–2.3 (共享, 委托处理, 转让, 公开披露).
    SHARED = "shared", _("shared with (共享)")
    ENTRUSTED = "entrusted", _("entrusted processor (委托处理)")
    TRANSFERRED = "transferred", _("transferred to (转让)")
    DISCLOSED = "disclosed", _("publicly disclosed (公开披露)")


class RecipientLegalBasis(models.TextChoices):
    # PIPL Art. 13, and seed 000 §2.4.
    CONSENT = "consent", _("consent")
    CONTRACT = "contract", _("necessary for a contract with the individual")
    LEGAL_DUTY = "legal_duty", _("necessary for a legal duty")
    VITAL_INTERESTS = "vital_interests", _("necessary to protect life, health or property in an emergency")
    PUBLIC_INTEREST = "public_interest", _("news reporting or supervision in the public interest")
    PUBLIC_INFORMATION = "public_information", _("information already lawfully disclosed to the public")
    OTHER = "other", _("other ground provided by law")


class Recipient(models.Model):
    """An entity that receives personal data from the controller. Without a webhook, its notices
    become manual tasks for staff."""

    code = models.SlugField(_("code"), max_length=50, unique=True)
    name = models.CharField(_("name"), max_length=200)
    kind = models.CharField(_("kind"), max_length=16, choices=RecipientKind.choices)
    purpose = models.TextField(_("purpose"))
    legal_basis = models.CharField(_("legal basis"), max_length=24, choices=RecipientLegalBasis.choices)
    categories = models.JSONField(_("categories of personal information"), default=list, blank=True)
    country = models.CharField(_("country or region"), max_length=100, default="CN")
    contact_email = models.EmailField(_("contact e-mail"), blank=True)
    webhook_url = models.URLField(
        _("webhook URL"),
        max_length=500,
        blank=True,
        validators=[validate_webhook_url],
        help_text=_(
            "Where signed notices are POSTed. Leave empty to handle this recipient's notices by hand."
        ),
    )
    # Sealed (core.crypto.seal) under a key derived from the master key; never shown.
    webhook_secret = models.TextField(_("webhook secret (sealed)"), blank=True, editable=False)
    active = models.BooleanField(
        _("active"),
        default=True,
        help_text=_("Inactive recipients get no new notices and their pending ones are not retried."),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        verbose_name = _("recipient")
        verbose_name_plural = _("recipients")

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    @property
    def has_webhook_secret(self) -> bool:
        return bool(self.webhook_secret)


class Disclosure(models.Model):
    """One recipient holds (some of) one subject's data: which categories, since and until when,
    and how the recipient knows the person (its own id), encrypted under the subject's key."""

    recipient = models.ForeignKey(Recipient, on_delete=models.PROTECT, related_name="disclosures")
    subject = models.ForeignKey("accounts.DataSubject", on_delete=models.CASCADE, related_name="disclosures")
    categories = models.JSONField(_("categories of personal information"), default=list, blank=True)
    first_at = models.DateTimeField(_("first disclosed at"))
    last_at = models.DateTimeField(_("last disclosed at"))
    external_ref = EncryptedTextField(_("the recipient's reference for the person"))

    class Meta:
        verbose_name = _("disclosure")
        verbose_name_plural = _("disclosures")
        constraints = [models.UniqueConstraint(fields=["recipient", "subject"], name="core_disclosure_once")]

    def __str__(self) -> str:
        return f"{self.recipient_id}:{self.subject_id}"


class NoticeKind(models.TextChoices):
    DELETION = "deletion", _("deletion")
    CORRECTION = "correction", _("correction")
    CONSENT_WITHDRAWAL = "consent_withdrawal", _("consent withdrawal")
    RESTRICTION = "restriction", _("restriction of processing")


class NoticeStatus(models.TextChoices):
    PENDING = "pending", _("pending")  # waiting for its (next) attempt at next_attempt_at
    SENDING = "sending", _("sending")  # claimed by a worker until next_attempt_at (the lease)
    DELIVERED = "delivered", _("delivered")  # the recipient answered 2xx
    MANUAL = "manual", _("to be handled by staff")  # the recipient has no webhook
    DONE = "done", _("done by staff")  # staff told the recipient by other means


class RecipientNotice(models.Model):
    """A notice owed to one recipient about one business event (a deletion request, a
    correction, a withdrawal). The unique (recipient, kind, reference) makes an event notify a
    recipient once however often it is triggered.

    pending → sending → delivered, or back to pending with a later next_attempt_at (exponential
    backoff, retried until a 2xx while the recipient is active); manual → done by staff.

    `payload` holds the body without personal data; what the recipient needs to find the person
    (and, for corrections, the new values) is in `personal_sealed`, sealed under a key derived
    from the master key rather than the subject's key, so a deletion notice can still be sent
    after the subject's key is destroyed. It is cleared once the notice is delivered or done."""

    recipient = models.ForeignKey(Recipient, on_delete=models.PROTECT, related_name="notices")
    subject = models.ForeignKey(
        "accounts.DataSubject",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="recipient_notices",
    )
    kind = models.CharField(_("kind"), max_length=24, choices=NoticeKind.choices)
    reference = models.CharField(_("reference"), max_length=64)
    idempotency_key = models.UUIDField(_("idempotency key"), default=uuid.uuid4, unique=True, editable=False)
    payload = models.JSONField(_("payload (without personal data)"), default=dict, blank=True)
    personal_sealed = models.TextField(null=True, blank=True, editable=False)
    status = models.CharField(
        _("status"), max_length=12, choices=NoticeStatus.choices, default=NoticeStatus.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)  # last queued for a worker
    last_status_code = models.PositiveSmallIntegerField(_("last HTTP status"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=200, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("handled by"),
    )
    handled_at = models.DateTimeField(_("handled at"), null=True, blank=True)
    handled_note = models.TextField(_("how the recipient was told"), blank=True)

    class Meta:
        verbose_name = _("recipient notice")
        verbose_name_plural = _("recipient notices")
        permissions: ClassVar = [
            ("handle_recipientnotice", _("Can mark recipient notices done and retry them"))
        ]
        constraints = [
            models.UniqueConstraint(fields=["recipient", "kind", "reference"], name="core_notice_once")
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="core_notice_due")]

    def __str__(self) -> str:
        return f"{self.kind} {self.reference} → {self.recipient_id}"
