from __future__ import annotations

import logging
import socket
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from core import recipients, services
from core.audit import audit_verify
from core.jobs import ALERT, JobOutcome, job_ran, singleton_job
from core.models import Heartbeat
from core.outbox import OutboxTask
from core.outbox import outbox_relay as _outbox_relay

log = logging.getLogger(__name__)


@shared_task(base=OutboxTask, name="core.tasks.heartbeat", time_limit=30, soft_time_limit=25)
def heartbeat(source: str = "worker") -> str:
    """Proof of life: a worker consumed the queue. Idempotent (an upsert)."""
    Heartbeat.objects.update_or_create(
        source=source, defaults={"at": timezone.now(), "hostname": socket.gethostname()}
    )
    if source == "worker":
        job_ran("heartbeat")  # the beat job of that name: /healthz reads its last run
    log.info("heartbeat: %s", source)
    return source


@shared_task(name="core.tasks.outbox_relay", time_limit=120, soft_time_limit=110)
@singleton_job("outbox-relay", every=timedelta(seconds=60))
def outbox_relay() -> int:
    sent = _outbox_relay()
    if sent:
        log.info("outbox relay: re-published %d message(s)", sent)
    return sent


@shared_task(name="core.tasks.verify_audit_chain", time_limit=3600, soft_time_limit=3500)
@singleton_job("verify-audit", every=timedelta(hours=24))
def verify_audit_chain() -> str | JobOutcome:
    """A break e-mails the DPO group and leaves an alert on the job's record, which the admin
    shows on every page and /healthz reports, until a later run finds the chain whole."""
    report = audit_verify()
    if not report.ok:
        finding = f"The audit chain is broken at entry #{report.first_bad_seq}: {report.reason}."
        services.alert_dpo(
            subject=f"Audit chain broken at entry #{report.first_bad_seq}",
            body=f"{finding} Run `python manage.py verify_audit` and investigate.",
        )
        log.error("audit chain broken at #%s: %s", report.first_bad_seq, report.reason)
        return JobOutcome(ALERT, finding)
    return f"ok={report.ok} checked={report.checked}"


@shared_task(base=OutboxTask, name="core.tasks.deliver_recipient_notice", time_limit=60, soft_time_limit=50)
def deliver_recipient_notice(notice_id: int) -> str:
    """One attempt; a failed attempt is rescheduled in the database (backoff), never raised,
    so the sweep, not Celery's retry, owns the schedule."""
    return recipients.notice_deliver(notice_id=notice_id)


@shared_task(name="core.tasks.recipient_notices_sweep", time_limit=120, soft_time_limit=110)
@singleton_job("recipient-notices", every=timedelta(seconds=60))
def recipient_notices_sweep() -> int:
    queued = recipients.notices_due_sweep()
    if queued:
        log.info("recipient notices: queued %d due notice(s)", queued)
    return queued
