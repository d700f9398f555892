"""Transactional outbox: queue Celery work in the same transaction as the change needing it.

`outbox_enqueue` writes a row in the caller's transaction and publishes the message after
commit. If the transaction rolls back, neither the row nor the message exists. If the
process dies between commit and publish, or the broker is down, or a worker loses the
message, the relay (beat, every minute) finds the row and publishes it again. Tasks run
through OutboxTask mark their row completed; they are idempotent, so a rare second run is
harmless, and a message delivered again after its row was completed is dropped.

A publish that fails (the broker is down) returns at once (the broker transport options in
settings allow one connection attempt and bounded socket waits), so a request never waits for
the broker; the row is then due again at the relay's next run.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from celery import Task, current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.maintenance import maintenance_active
from core.models import OutboxMessage

log = logging.getLogger(__name__)
OUTBOX_KWARG = "_outbox_id"
# A message not published this long after its commit was lost on the way to the broker.
UNPUBLISHED_GRACE = timedelta(seconds=30)


def outbox_enqueue(task_name: str, **kwargs: Any) -> OutboxMessage:
    message = OutboxMessage.objects.create(task_name=task_name, kwargs=kwargs)
    transaction.on_commit(lambda: outbox_publish(message_id=message.id))
    return message


def outbox_publish(*, message_id: uuid.UUID) -> bool:
    message = OutboxMessage.objects.filter(pk=message_id, completed_at__isnull=True).first()
    if message is None:
        return False
    try:
        current_app.send_task(message.task_name, kwargs={**message.kwargs, OUTBOX_KWARG: str(message.id)})
    except Exception as exc:  # broker down: the relay publishes it later
        log.warning("outbox: publishing %s failed, will retry: %r", message.id, exc)
        # Not dispatched (also when a relay had claimed it): due again at the relay's next run,
        # not only after QUANYI_OUTBOX_RESEND_AFTER_SECONDS.
        OutboxMessage.objects.filter(pk=message.id, completed_at__isnull=True).update(
            dispatched_at=None, last_error=type(exc).__name__
        )
        return False
    OutboxMessage.objects.filter(pk=message.id).update(
        dispatched_at=timezone.now(), attempts=message.attempts + 1, last_error=""
    )
    return True


def outbox_relay(*, limit: int = 500) -> int:
    """Publish what was never published, or published long ago and never finished."""
    now = timezone.now()
    resend_before = now - timedelta(seconds=settings.QUANYI_OUTBOX_RESEND_AFTER_SECONDS)
    due = (
        OutboxMessage.objects.filter(completed_at__isnull=True)
        .filter(
            # Never published: the publish after commit failed, or was lost (a crash in between).
            Q(dispatched_at__isnull=True) & (~Q(last_error="") | Q(created_at__lt=now - UNPUBLISHED_GRACE))
            | Q(dispatched_at__lt=resend_before)
        )
        .order_by("created_at")
        .values_list("id", "dispatched_at")[:limit]
    )
    sent = 0
    for message_id, dispatched_at in list(due):
        # Claim with a conditional UPDATE so two relays never publish the same row twice.
        claimed = OutboxMessage.objects.filter(pk=message_id, dispatched_at=dispatched_at).update(
            dispatched_at=now
        )
        if not claimed:
            continue
        if not outbox_publish(message_id=message_id):
            break  # the broker is down: the rest waits for the next run
        sent += 1
    return sent


def outbox_complete(*, message_id: str) -> None:
    OutboxMessage.objects.filter(pk=message_id, completed_at__isnull=True).update(completed_at=timezone.now())


class OutboxTask(Task):  # type: ignore[misc]
    """Base for tasks queued through the outbox: strips the outbox id and, once the task
    body returns, marks the row completed."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        message_id = kwargs.pop(OUTBOX_KWARG, None)
        if maintenance_active():
            # A restore is replaying erasures: leave the row unfinished, so the relay sends it
            # again once the system is open (the database is the source of truth).
            log.warning("task %s: maintenance flag set, left for the outbox relay", self.name)
            return None
        if message_id and OutboxMessage.objects.filter(pk=message_id, completed_at__isnull=False).exists():
            # Published twice (a publish that timed out had reached the broker after all, and
            # the relay sent it again): the work is done already.
            log.info("task %s: outbox message %s is done already, duplicate dropped", self.name, message_id)
            return None
        result = super().__call__(*args, **kwargs)
        if message_id:
            outbox_complete(message_id=message_id)
        return result
