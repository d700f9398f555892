from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from config.celery import app
from core import tasks
from core.jobs import SKIPPED
from core.models import Heartbeat, JobState, OutboxMessage
from core.outbox import outbox_enqueue, outbox_relay
from tests.conftest import ALL, Worker, wait_for


def test_celery_is_configured_for_safe_delivery() -> None:
    conf = app.conf
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.task_time_limit and conf.task_soft_time_limit
    assert conf.task_always_eager is False
    assert {"heartbeat", "outbox-relay", "verify-audit", "dsar-reminders", "backup-nightly"} <= set(
        conf.beat_schedule
    )


@pytest.mark.worker
@pytest.mark.django_db(transaction=True, databases=ALL)
def test_a_task_queued_on_commit_runs_and_one_queued_in_a_rolled_back_transaction_never_does(
    celery_worker: Worker,
) -> None:
    with transaction.atomic():
        outbox_enqueue("core.tasks.heartbeat", source="committed")
    with pytest.raises(RuntimeError), transaction.atomic():
        outbox_enqueue("core.tasks.heartbeat", source="rolled-back")
        raise RuntimeError("the change failed")
    # A third message after both: once the worker has run it, it has seen everything before.
    with transaction.atomic():
        outbox_enqueue("core.tasks.heartbeat", source="sentinel")

    wait_for(lambda: Heartbeat.objects.filter(source="sentinel").exists(), timeout=60)

    assert Heartbeat.objects.filter(source="committed").exists()
    assert not Heartbeat.objects.filter(source="rolled-back").exists()
    assert OutboxMessage.objects.count() == 2
    wait_for(lambda: not OutboxMessage.objects.filter(completed_at__isnull=True).exists())
    assert "rolled-back" not in celery_worker.log()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True, databases=ALL)
def test_work_whose_message_was_lost_is_found_again_by_the_relay(celery_worker: Worker) -> None:
    # As if the web process died right after COMMIT, before publishing: a row and no message.
    lost = OutboxMessage.objects.create(task_name="core.tasks.heartbeat", kwargs={"source": "lost"})
    OutboxMessage.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(minutes=2))
    # And one published long ago that never finished (a worker lost it).
    stale = OutboxMessage.objects.create(task_name="core.tasks.heartbeat", kwargs={"source": "stale"})
    OutboxMessage.objects.filter(pk=stale.pk).update(
        created_at=timezone.now() - timedelta(hours=1), dispatched_at=timezone.now() - timedelta(hours=1)
    )

    assert outbox_relay() == 2
    assert outbox_relay() == 0  # claimed: a second relay does not publish them again

    wait_for(lambda: Heartbeat.objects.filter(source__in=["lost", "stale"]).count() == 2, timeout=60)
    wait_for(lambda: OutboxMessage.objects.filter(completed_at__isnull=False).count() == 2)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True, databases=ALL)
def test_every_scheduled_job_is_published_as_beat_does_and_runs_on_the_worker(celery_worker: Worker) -> None:
    app.loader.import_default_modules()  # what a worker or beat does at start: autodiscovery
    for entry in app.conf.beat_schedule.values():
        # Beat calls apply_async on the registered task with its own options.
        app.tasks[entry["task"]].apply_async(**entry.get("options", {}))

    wait_for(lambda: Heartbeat.objects.filter(source="worker").exists(), timeout=60)
    wait_for(
        lambda: (
            set(JobState.objects.filter(last_status="ok").values_list("name", flat=True))
            >= {"outbox-relay", "verify-audit", "backup-nightly"}
        ),
        timeout=120,
    )


@pytest.mark.django_db(databases=ALL)
def test_a_second_beat_firing_the_same_job_does_no_double_work() -> None:
    first = tasks.outbox_relay.run()
    second = tasks.outbox_relay.run()

    assert first == 0
    assert second == SKIPPED
    assert JobState.objects.get(name="outbox-relay").runs == 1


@pytest.mark.django_db(databases=ALL)
def test_a_job_runs_again_once_its_slot_has_passed() -> None:
    tasks.outbox_relay.run()
    JobState.objects.filter(name="outbox-relay").update(claimed_until=timezone.now() - timedelta(seconds=1))

    assert tasks.outbox_relay.run() == 0
    assert JobState.objects.get(name="outbox-relay").runs == 2
