"""Faults (issue "Prove it under attack"): the broker goes away while people submit requests, a
worker is killed with SIGKILL while it builds an access package, and a retention sweep loses its
database connection in the middle of a batch. Nothing is lost, nothing is done twice.

A worker killed half-way through erasures and notice campaigns is proved in
tests/test_erasure_worker.py and tests/test_consent_campaigns.py; not repeated here.
"""

from __future__ import annotations

import email
import io
import json
import re
import shutil
import signal
import socket
import subprocess
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from django.conf import settings
from django.core import mail
from django.db import connections, transaction
from django.test import Client
from django.utils import timezone

from accounts.models import User
from config.celery import app as celery_app
from core.audit import SYSTEM, audit_verify
from core.models import AuditEntry, Heartbeat, OutboxMessage
from core.outbox import outbox_enqueue, outbox_relay
from dsar import sample_product, services
from dsar.models import DataExport, DataSubjectRequest, ExportStatus, RequestType, VerificationMethod
from tests import factories
from tests.conftest import ALL, Worker, wait_for

REDIS_SERVER = shutil.which("redis-server")
needs_redis_server = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server is not on PATH: the broker outage needs a Redis of its own"
)

# --- A Redis of the test's own, stopped and started by the test ------------------------------------------

OUTAGE_SECONDS = 30  # the issue: "Redis stopped for 30 seconds"
SUBMISSIONS = 200
PER_CLIENT = 10  # dsar.views.SUBMIT_PER_IP: each client submits up to its limit, never over it
PUBLIC = "/api/v1/public/requests/"
ACK = "dsar.tasks.send_requester_email"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SpareRedis:
    """A real redis-server on a free port, with nothing on disk: stopping it loses whatever it
    held, as a restarted Redis without persistence does."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        log = (self.folder / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no"],
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_for(up, timeout=10)
        client.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # in case it was frozen
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def freeze(self) -> None:
        """The process stays, its sockets stay open, it answers nothing (a hung broker)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def spare_redis(tmp_path: Path) -> Iterator[SpareRedis]:
    server = SpareRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def _drop_broker_pools() -> None:
    if celery_app._pool is not None:
        celery_app._pool.force_close_all()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@contextmanager
def web_broker(url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process (the web side: views, services, the relay) publishes to `url`, with the
    transport options the settings give a network broker, as a web process started with
    CELERY_BROKER_URL=<url> would. Celery reads CELERY_BROKER_URL from the environment first."""
    conf = celery_app.conf
    old = conf.broker_url, conf.broker_transport_options
    _drop_broker_pools()
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    conf.broker_url = url
    conf.broker_transport_options = dict(settings.QUANYI_NETWORK_BROKER_OPTIONS)
    try:
        yield
    finally:
        _drop_broker_pools()
        monkeypatch.undo()
        conf.broker_url, conf.broker_transport_options = old


def _submit(client: Client, n: int, *, ip: str | None = None) -> Any:
    """The public API, as a person without an account uses it; `n` picks the person, and the
    client address is one of SUBMISSIONS / PER_CLIENT (so no client goes over its limit)."""
    return client.post(
        PUBLIC,
        {
            "type": "access",
            "name": f"患者{n}",
            "email": f"outage{n:03d}@example.cn",
            "phone": f"139{n:08d}",
            "details": "请提供我的就诊记录副本",
        },
        content_type="application/json",
        REMOTE_ADDR=ip or f"198.51.100.{n // PER_CLIENT + 1}",
        HTTP_ACCEPT_LANGUAGE="en",
    )


def _mails(worker: Worker) -> list[tuple[str, str]]:
    """(To, Subject) of every e-mail the worker wrote (Django's file backend, one per block)."""
    separator = "\n" + "-" * 79 + "\n"
    found = []
    for text in worker.mails():
        for block in filter(None, (b.strip() for b in text.split(separator))):
            message = email.message_from_string(block)
            found.append((str(message["To"]), str(make_header(decode_header(message["Subject"])))))
    return found


def _acknowledgements(worker: Worker) -> Counter[str]:
    """Received e-mails the worker sent, by request reference."""
    prefix = "We received your request "
    return Counter(
        subject.removeprefix(prefix) for _to, subject in _mails(worker) if subject.startswith(prefix)
    )


def _relay_until(done: Any, *, timeout: float) -> None:
    """What beat's outbox-relay job does every minute, every two seconds, until `done()`."""
    last = [0.0]

    def check() -> bool:
        if time.monotonic() - last[0] > 2:
            last[0] = time.monotonic()
            outbox_relay()
        return bool(done())

    wait_for(check, timeout=timeout, interval=0.2)


@needs_redis_server
@pytest.mark.django_db(transaction=True, databases=ALL)
@pytest.mark.timeout(420)
def test_requests_made_while_the_broker_is_down_are_all_accepted_and_each_acknowledged_once(
    spare_redis: SpareRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = Worker(tmp_path / "worker.log", tmp_path / "mail", env={"CELERY_BROKER_URL": spare_redis.url})
    worker.start()
    try:
        with web_broker(spare_redis.url, monkeypatch):
            client = Client()
            # A web process that has been serving for a while (code loaded, broker connected).
            assert _submit(client, SUBMISSIONS + 1, ip="203.0.113.9").status_code == 201
            wait_for(lambda: not OutboxMessage.objects.filter(completed_at__isnull=True).exists(), timeout=60)
            before = set(DataSubjectRequest.objects.values_list("reference", flat=True))
            mail.outbox.clear()

            # Given the broker goes down (the worker stays, and keeps trying to reconnect),
            spare_redis.stop()
            stopped = time.monotonic()
            took: list[float] = []
            # when 200 people submit a request, each from one of 20 networks,
            for n in range(SUBMISSIONS):
                began = time.monotonic()
                response = _submit(client, n)
                took.append(time.monotonic() - began)
                assert response.status_code == 201, response.content
            submitted = time.monotonic() - stopped
            # (the rate limit still holds: an eleventh request from the first network is refused)
            assert _submit(client, SUBMISSIONS, ip="198.51.100.1").status_code == 429

            # then every one was answered at once, stored, and its acknowledgement waits in the
            # outbox: not published, nothing lost.
            assert max(took) < 1.0, f"a submission waited {max(took):.2f}s for the broker"
            assert submitted < OUTAGE_SECONDS, f"the submissions outlasted the outage: {submitted:.1f}s"
            references = set(DataSubjectRequest.objects.values_list("reference", flat=True)) - before
            assert len(references) == SUBMISSIONS
            waiting = OutboxMessage.objects.filter(task_name=ACK, completed_at__isnull=True)
            assert waiting.count() == SUBMISSIONS
            assert not waiting.filter(dispatched_at__isnull=False).exists()
            assert set(waiting.values_list("last_error", flat=True)) == {"OperationalError"}
            # The 6-digit codes go straight to the mail server from the web process (the code is
            # never stored, so it cannot wait in the outbox): all 200 left.
            coded = sorted(m.to[0] for m in mail.outbox)
            assert coded == sorted(f"outage{n:03d}@example.cn" for n in range(SUBMISSIONS))
            # A relay run during the outage publishes nothing, and leaves every row due.
            assert outbox_relay() == 0
            assert not waiting.filter(dispatched_at__isnull=False).exists()

            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
            spare_redis.start()  # empty: a Redis without persistence forgets everything

            _relay_until(lambda: not waiting.exists(), timeout=180)
    finally:
        worker.stop()

    acknowledged = _acknowledgements(worker)
    assert set(acknowledged) == references | before
    assert set(acknowledged.values()) == {1}, "every requester gets exactly one acknowledgement"
    assert OutboxMessage.objects.filter(completed_at__isnull=True).count() == 0


@needs_redis_server
@pytest.mark.django_db(transaction=True, databases=ALL)
@pytest.mark.timeout(180)
def test_a_request_made_while_the_broker_hangs_returns_within_seconds_and_is_acknowledged_once(
    spare_redis: SpareRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = Worker(tmp_path / "worker.log", tmp_path / "mail", env={"CELERY_BROKER_URL": spare_redis.url})
    worker.start()
    try:
        with web_broker(spare_redis.url, monkeypatch):
            client = Client()
            assert _submit(client, 1).status_code == 201  # the web process holds a live broker connection
            wait_for(lambda: not OutboxMessage.objects.filter(completed_at__isnull=True).exists(), timeout=60)

            spare_redis.freeze()
            began = time.monotonic()
            response = _submit(client, 2)
            took = time.monotonic() - began
            spare_redis.thaw()

            assert response.status_code == 201, response.content
            limit = settings.QUANYI_BROKER_PUBLISH_OPTIONS["socket_timeout"] + 1
            assert took < limit, f"the submission waited {took:.1f}s on a hung broker"
            reference = response.json()["reference"]
            row = OutboxMessage.objects.get(task_name=ACK, kwargs__request_id=response.json()["id"])
            assert (row.dispatched_at, row.completed_at) == (None, None)
            assert row.last_error

            # The publish timed out, yet Redis may still have taken the message it had been sent:
            # the relay sends it again, and whichever copy comes second is dropped.
            done = OutboxMessage.objects.filter(pk=row.pk, completed_at__isnull=False)
            _relay_until(done.exists, timeout=60)
            with transaction.atomic():
                outbox_enqueue("core.tasks.heartbeat", source="after-the-hang")
            wait_for(lambda: Heartbeat.objects.filter(source="after-the-hang").exists(), timeout=60)
    finally:
        worker.stop()

    assert _acknowledgements(worker)[reference] == 1
    assert len(re.findall(rf"{ACK}\[[^\]]+\] received", worker.log())) == 3, worker.log()[-3000:]
    assert "duplicate dropped" in worker.log()


# --- A worker killed with SIGKILL while it builds an access package --------------------------------------

EXPORT_ROWS = 4000  # messages of one person, read EXPORT_BATCH at a time: many batches to die in
EXPORT_BATCH = 50
ZHAO = sample_product.Person(
    email="zhao.kill@example.cn",
    phone="13600136000",
    name="赵六",
    id_number="440101198505051234",
    birthday="1985-05-05",
    gender="女",
    native_place="广东省广州市",
)


def _patient_id(person: sample_product.Person) -> int:
    with connections["product"].cursor() as cursor:
        cursor.execute("SELECT id FROM patients WHERE email = %s", [person.email])
        return int(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True, databases=ALL)
@pytest.mark.timeout(240)
def test_a_worker_killed_while_building_a_package_leaves_one_package_built_once(
    product: None, own_queue: str, tmp_path: Path, settings: Any
) -> None:
    exports = tmp_path / "exports"
    settings.QUANYI_EXPORT_DIR = exports
    settings.QUANYI_OUTBOX_RESEND_AFTER_SECONDS = 5  # the relay re-sends unfinished work quickly
    sample_product.demo_load([ZHAO])
    pid = _patient_id(ZHAO)
    sample_product.insert_rows(
        "messages",
        ["patient_id", "channel", "direction", "body", "sent_at"],
        [(pid, "app", "out", f"复诊提醒 #{n}", timezone.now()) for n in range(EXPORT_ROWS)],
    )
    user = cast(User, factories.UserFactory(email=ZHAO.email, language="en"))
    subject = factories.subject(
        user=user,
        email=ZHAO.email,
        phone=ZHAO.phone,
        id_number=ZHAO.id_number,
        full_name=ZHAO.name,
        language="en",
    )
    request = services.request_verify(
        request=services.request_submit(
            actor=SYSTEM, type=RequestType.ACCESS, subject=subject, user=user, language="en"
        ),
        actor=SYSTEM,
        method=VerificationMethod.DOCUMENTS,
    )
    # Small batches and a short lease, so the kill lands mid-build and the take-over is quick.
    env = {
        "QUANYI_EXPORT_DIR": str(exports),
        "QUANYI_EXPORT_BATCH": str(EXPORT_BATCH),
        "QUANYI_EXPORT_LEASE_SECONDS": "3",
    }
    first = Worker(tmp_path / "first.log", tmp_path / "mail", queue=own_queue, env=env)
    first.start()
    try:
        export = services.export_start(request=request, actor=SYSTEM)
        building = DataExport.objects.filter(
            pk=export.pk, status=ExportStatus.BUILDING, rows_done__gte=10 * EXPORT_BATCH
        )
        wait_for(building.exists, timeout=90, interval=0.005)
        assert first.proc is not None
        first.proc.send_signal(signal.SIGSTOP)  # frozen mid-build, then killed frozen
        time.sleep(0.3)  # a COMMIT sent just before the freeze still lands
        export.refresh_from_db()
        first.kill()
    finally:
        first.stop()
    assert export.status == ExportStatus.BUILDING, "the kill must land mid-build"
    assert 0 < export.rows_done < export.rows_total
    assert export.attempts == 1
    assert not list(exports.glob("*.qyx")), "nothing of the dead build is a package"

    second = Worker(tmp_path / "second.log", tmp_path / "mail", queue=own_queue, env=env)
    second.start()
    try:
        _relay_until(
            lambda: (
                DataExport.objects.filter(pk=export.pk, status=ExportStatus.READY).exists()
                and not OutboxMessage.objects.filter(completed_at__isnull=True).exists()
            ),
            timeout=120,
        )
    finally:
        second.stop()

    assert DataExport.objects.filter(request=request).count() == 1
    export.refresh_from_db()
    assert (export.status, export.attempts) == (ExportStatus.READY, 2)
    assert export.rows_done == export.rows_total
    assert sorted(p.name for p in exports.iterdir()) == [export.file_path], "one archive, no leftovers"
    with zipfile.ZipFile(io.BytesIO(b"".join(services.export_open(export)))) as zf:
        data = json.loads(zf.read("data.json"))
    tables = {(s["code"], t["name"]): t for s in data["sources"] for t in s["tables"]}
    with connections["product"].cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM messages WHERE patient_id = %s", [pid])
        held = int(cursor.fetchone()[0])
    assert held > EXPORT_ROWS
    assert tables[("health_app", "messages")]["row_count"] == held

    ready = f"Your personal information for request {request.reference} is ready"
    assert _mails(second).count((ZHAO.email, ready)) == 1  # both workers wrote to the same folder
    audited = Counter(
        AuditEntry.objects.filter(object_id=str(request.pk), action__startswith="export.").values_list(
            "action", flat=True
        )
    )
    assert audited == {"export.queued": 1, "export.building": 2, "export.ready": 1}
    assert AuditEntry.objects.filter(object_id=str(request.pk), action="request.complete").count() == 1
    assert audit_verify().ok
