from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import shared_task

from core.jobs import singleton_job
from core.outbox import OutboxTask
from dsar import cancellation, erasure, notifications, services


@shared_task(
    base=OutboxTask,
    name="dsar.tasks.send_requester_email",
    time_limit=60,
    soft_time_limit=50,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=8,
)
def send_requester_email(request_id: int, kind: str) -> int:
    return notifications.send_requester_email(request_id=request_id, kind=kind)


@shared_task(
    base=OutboxTask,
    name="dsar.tasks.send_reminder",
    time_limit=60,
    soft_time_limit=50,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=8,
)
def send_reminder(reminder_id: int) -> int:
    return notifications.send_reminder(reminder_id=reminder_id)


@shared_task(
    base=OutboxTask,
    name="dsar.tasks.send_deadline_moved",
    time_limit=60,
    soft_time_limit=50,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=8,
)
def send_deadline_moved(request_id: int, old_due: str) -> int:
    return notifications.send_deadline_moved(request_id=request_id, old_due=old_due)


@shared_task(base=OutboxTask, name="dsar.tasks.recompute_deadlines", time_limit=1800, soft_time_limit=1700)
def recompute_deadlines(year: int) -> int:
    return len(services.deadlines_recompute(year=year))


@shared_task(name="dsar.tasks.reminders_sweep", time_limit=1800, soft_time_limit=1700)
@singleton_job("dsar-reminders", every=timedelta(minutes=15))
def reminders_sweep() -> int:
    return services.reminders_sweep()


@shared_task(
    base=OutboxTask,
    name="dsar.tasks.send_cancellation_blocked",
    time_limit=60,
    soft_time_limit=50,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=8,
)
def send_cancellation_blocked(request_id: int) -> int:
    return notifications.send_cancellation_blocked(request_id=request_id)


@shared_task(name="dsar.tasks.cancellations_sweep", time_limit=1800, soft_time_limit=1700)
@singleton_job("dsar-cancellations", every=timedelta(minutes=15))
def cancellations_sweep() -> int:
    return cancellation.cancellations_sweep()


# Erasure runs outlive the default time limit; the lease lets another worker take over a
# crashed run (retention.erasure), so the limit is generous.
@shared_task(base=OutboxTask, name="dsar.tasks.run_erasure", time_limit=3600, soft_time_limit=3500)
def run_erasure(erasure_id: int) -> str:
    return erasure.run_erasure(erasure_id=erasure_id)


@shared_task(
    base=OutboxTask,
    bind=True,
    name="dsar.tasks.build_export",
    # A package of a few million rows takes minutes; the lease (renewed every batch) is what
    # lets another worker take over a build that died, not this limit.
    time_limit=4 * 3600,
    soft_time_limit=4 * 3600 - 60,
    max_retries=12,
)
def build_export(self: Any, export_id: int) -> str:
    result = services.export_build(export_id=export_id)
    if result == services.BUILD_BUSY:
        # Another worker holds a live lease (this is a re-published duplicate). Come back when
        # it would have run out, without marking the outbox row done: if that worker died, the
        # export must still be built.
        raise self.retry(countdown=int(services.export_lease().total_seconds()) + 30)
    return result


@shared_task(
    base=OutboxTask,
    name="dsar.tasks.send_export_ready",
    time_limit=60,
    soft_time_limit=50,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=8,
)
def send_export_ready(export_id: int) -> int:
    return notifications.send_export_ready(export_id=export_id)


@shared_task(name="dsar.tasks.expire_exports", time_limit=1800, soft_time_limit=1700)
@singleton_job("dsar-expire-exports", every=timedelta(hours=1))
def expire_exports() -> int:
    return services.exports_expire()
