from __future__ import annotations

import uuid
from typing import Any, NoReturn

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
