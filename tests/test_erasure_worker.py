"""A real Celery worker erasing many subjects is killed with SIGKILL half-way, a new one is
started, and every subject ends up erased exactly once and every recipient notified once."""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.db import connections
from django.utils import timezone

from config.celery import app as celery_app
from core import crypto, sources
from core.audit import SYSTEM, audit_verify
from core.models import (
    AuditEntry,
    NoticeStatus,
    RecipientNotice,
)
from core.recipients import REDISPATCH_AFTER, disclosure_record, notices_due_sweep
from dsar import erasure, sample_product, services
from dsar.models import DataSubjectRequest, RequestType, Status, VerificationMethod
from retention.erasure import erasures_resume
from retention.models import Erasure, Tombstone
from tests import factories
from tests.conftest import ALL, Worker, wait_for
from tests.receiver import Receiver

SUBJECTS = 8
EXTRA_MESSAGES = 150  # per subject, so each erasure takes many batches


@pytest.fixture
def own_queue() -> Any:
    """Publish to a queue of this test's own, so only its worker (not the session's) consumes."""
    queue = f"quanyi-kill-{uuid.uuid4().hex[:8]}"
    old = celery_app.conf.task_default_queue, celery_app.conf.task_default_routing_key
    celery_app.conf.task_default_queue = celery_app.conf.task_default_routing_key = queue
    yield queue
    celery_app.conf.task_default_queue, celery_app.conf.task_default_routing_key = old


def people() -> list[sample_product.Person]:
    return [
        sample_product.Person(
            email=f"kill{n}@example.cn",
            phone=f"1390000{n:04d}",
            name=f"患者{n}",
            id_number=f"3301011990010{n:04d}"[:17] + "X",
            birthday="1990-01-01",
            gender="男",
            native_place="浙江省杭州市",
        )
        for n in range(SUBJECTS)
    ]


@pytest.mark.django_db(transaction=True, databases=ALL)
@pytest.mark.timeout(300)
def test_a_killed_worker_leaves_every_subject_erased_exactly_once(
    product: None, receiver: Receiver, own_queue: str, tmp_path: Path
) -> None:
    logistics = factories.logistics_recipient(receiver.url())
    plans: dict[str, Erasure] = {}
    for p in people():
        subject = factories.subject(email=p.email, phone=p.phone, id_number=p.id_number, full_name=p.name)
        sample_product.demo_load([p])
        with connections["product"].cursor() as cursor:
            cursor.execute("SELECT id FROM patients WHERE email = %s", [p.email])
            pid = cursor.fetchone()[0]
        sample_product.insert_rows(
            "messages",
            ["patient_id", "channel", "direction", "body", "sent_at"],
            [(pid, "app", "in", f"消息 {n}", timezone.now()) for n in range(EXTRA_MESSAGES)],
        )
        disclosure_record(
            recipient=logistics,
            subject=subject,
            categories=["orders_delivery"],
            external_ref=f"SD-{pid}",
            actor=SYSTEM,
        )
        request = services.request_submit(actor=SYSTEM, type=RequestType.DELETION, subject=subject)
        request = services.request_verify(request=request, actor=SYSTEM, method=VerificationMethod.STAFF)
        plans[p.email] = erasure.request_erasure_plan(request=request, actor=SYSTEM)

    # Small batches and a short lease, so the kill lands mid-erasure and the take-over is quick.
    env = {"QUANYI_ERASURE_BATCH": "10", "QUANYI_ERASURE_LEASE_SECONDS": "3"}
    first = Worker(tmp_path / "first.log", tmp_path / "mail", queue=own_queue, env=env)
    first.start()
    try:
        for plan in plans.values():
            request = DataSubjectRequest.objects.get(reference=plan.reference)
            erasure.request_erasure_confirm(request=request, actor=SYSTEM)

        def mid_way() -> bool:
            done = Erasure.objects.filter(status=Erasure.Status.DONE).count()
            running = Erasure.objects.filter(status=Erasure.Status.RUNNING, rows_done__gt=0).exists()
            return done >= 2 and running

        wait_for(mid_way, timeout=120, interval=0.02)
        first.kill()
    finally:
        first.stop()
    interrupted = Erasure.objects.exclude(status=Erasure.Status.DONE).count()
    assert interrupted > 0, "the kill must land before the last erasure"
    assert Erasure.objects.filter(status=Erasure.Status.RUNNING).exists()

    second = Worker(tmp_path / "second.log", tmp_path / "mail", queue=own_queue, env=env)
    second.start()
    try:
        last = [0.0]

        def all_done() -> bool:
            if time.monotonic() - last[0] > 2:  # what beat's erasures-resume does every minute
                last[0] = time.monotonic()
                erasures_resume()
                # The killed worker may have taken delivery messages with it (on Redis they
                # stay invisible for an hour): beat's recipient-notices sweep queues them again
                # once REDISPATCH_AFTER has passed, as it would minutes later in production.
                with time_machine.travel(timezone.now() + REDISPATCH_AFTER, tick=False):
                    notices_due_sweep()
            delivered = RecipientNotice.objects.filter(status=NoticeStatus.DELIVERED).count()
            return (
                Erasure.objects.filter(status=Erasure.Status.DONE).count() == SUBJECTS
                and delivered == SUBJECTS
            )

        wait_for(all_done, timeout=180, interval=0.2)
    finally:
        second.stop()

    for p in people():
        plan = Erasure.objects.get(pk=plans[p.email].pk)
        assert plan.rows_done == plan.rows_total
        assert Tombstone.objects.filter(erasure=plan).count() == 1
        assert AuditEntry.objects.filter(action="erasure.completed", object_id=str(plan.pk)).count() == 1
        assert crypto.subject_key_is_destroyed(plan.subject.key_id)
        assert DataSubjectRequest.objects.get(reference=plan.reference).status == Status.COMPLETED
        with connections["product"].cursor() as cursor:
            # Hashed exactly once: the stored value is the hash of the original, not of a hash.
            cursor.execute("SELECT id, phone FROM patients WHERE email = %s", [sources.erasure_hash(p.email)])
            pid, phone = cursor.fetchone()
            assert phone == sources.erasure_hash(p.phone)
            for table in ("messages", "devices", "locations"):
                cursor.execute(f"SELECT COUNT(*) FROM {table} WHERE patient_id = %s", [pid])  # noqa: S608
                assert cursor.fetchone()[0] == 0, table
    # One notice per subject for the recipient, each delivered; every POST of a notice carries
    # the same idempotency key and body, so the recipient acts on each once.
    notices = RecipientNotice.objects.filter(recipient=logistics)
    assert notices.count() == SUBJECTS
    assert {n.reference for n in notices} == {plan.reference for plan in plans.values()}
    posts: dict[str, set[bytes]] = defaultdict(set)
    for received in receiver.requests:
        posts[received.headers["idempotency-key"]].add(received.body)
    assert set(posts) == {str(n.idempotency_key) for n in notices}
    assert all(len(bodies) == 1 for bodies in posts.values())
    refs = {json.loads(next(iter(b)))["subject"]["external_ref"] for b in posts.values()}
    assert len(refs) == SUBJECTS
    assert audit_verify().ok
