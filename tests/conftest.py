from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache

from config.celery import app as celery_app
from core import crypto
from core.db import database_url
from tests.receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent
ALL = "__all__"

# Each test session publishes to a queue of its own, so a `make run` worker (or another
# session) on the same broker never consumes the tests' messages.
TEST_QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE") or f"quanyi-test-{uuid.uuid4().hex[:8]}"


def pytest_configure(config: pytest.Config) -> None:
    settings.CELERY_TASK_DEFAULT_QUEUE = TEST_QUEUE
    celery_app.conf.task_default_queue = TEST_QUEUE
    celery_app.conf.task_default_routing_key = TEST_QUEUE


@pytest.fixture(autouse=True)
def _fresh_caches(request: pytest.FixtureRequest) -> Iterator[None]:
    # Rate-limit counters live in the shared cache; a test starts with none. (The database
    # cache is reachable only in tests that use the database.)
    marker = request.node.get_closest_marker("django_db")
    if marker:
        request.getfixturevalue("_django_db_helper")
        cache.clear()
        if marker.kwargs.get("transaction"):
            _reference_data()
    crypto.clear_key_cache()
    yield
    crypto.clear_key_cache()


def _reference_data() -> None:
    """What migrations put in the database and a transactional test's flush takes away: the
    staff groups, the seeded working-day calendar, the shipped retention rules, the audit
    chain head."""
    from django.apps import apps

    from accounts.roles import roles_install
    from core.audit import GENESIS_HASH
    from core.models import AuditChainHead
    from dsar.calendar_seed import seed_calendar
    from retention.defaults import rules_install

    roles_install(apps)
    seed_calendar(apps)
    rules_install(apps)
    AuditChainHead.objects.get_or_create(pk=1, defaults={"seq": 0, "hash": GENESIS_HASH})


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> None:
    """The test databases, plus the sample product's tables in the test product database
    (Quanyi never migrates the product's database, so migrations do not create them)."""
    from dsar import sample_product

    with django_db_blocker.unblock():
        sample_product.install()


@pytest.fixture
def product(request: pytest.FixtureRequest) -> Iterator[None]:
    """An empty sample product database for the test (transactional tests leave rows behind,
    the flush does not know these tables)."""
    from dsar import sample_product

    request.getfixturevalue("_django_db_helper")
    sample_product.truncate()
    yield


@pytest.fixture
def own_queue() -> Iterator[str]:
    """Publish to a queue of this test's own: the session's worker never consumes it, so work
    the test queues runs only where the test runs it (in-process, or a Worker on this queue)."""
    queue = f"quanyi-own-{uuid.uuid4().hex[:8]}"
    old = celery_app.conf.task_default_queue, celery_app.conf.task_default_routing_key
    celery_app.conf.task_default_queue = celery_app.conf.task_default_routing_key = queue
    yield queue
    celery_app.conf.task_default_queue, celery_app.conf.task_default_routing_key = old


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real local webhook endpoint (tests.receiver)."""
    r = Receiver()
    r.start()
    yield r
    r.stop()


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PYTEST_") and k != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    env.update(
        DEBUG="true",
        DATABASE_URL=database_url("default"),
        KEYSTORE_DATABASE_URL=database_url("keystore"),
        PRODUCT_DATABASE_URL=database_url("product"),
        CELERY_TASK_DEFAULT_QUEUE=TEST_QUEUE,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def manage(
    *args: str, env: dict[str, str] | None = None, timeout: int = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env if env is not None else subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for(predicate: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class Worker:
    """A real `celery worker` process. E-mail it sends lands as files in `mail_dir`."""

    def __init__(
        self,
        log_path: Path,
        mail_dir: Path,
        *,
        queue: str = TEST_QUEUE,
        env: dict[str, str] | None = None,
        loglevel: str = "INFO",
    ) -> None:
        self.log_path = log_path
        self.loglevel = loglevel
        self.mail_dir = mail_dir
        self.queue = queue
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool=solo",
                "--concurrency=1",
                f"--loglevel={self.loglevel}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                f"--queues={self.queue}",
                f"--hostname=test-{uuid.uuid4().hex[:6]}@%h",
            ],
            cwd=ROOT,
            env=subprocess_env(
                EMAIL_URL=f"filemail://{self.mail_dir}", CELERY_TASK_DEFAULT_QUEUE=self.queue, **self.env
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: b" ready." in self.log_path.read_bytes() or self._died(), timeout=60)
        if self._died():
            raise RuntimeError(f"Celery worker failed to start:\n{self.log()}")

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-task, without cleaning up anything."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def mails(self) -> list[str]:
        return [p.read_text(errors="replace") for p in sorted(self.mail_dir.glob("*.log"))]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    """A real Celery worker process on the configured broker, using the test databases."""
    folder = tmp_path_factory.mktemp("celery")
    # The nightly backup job runs on it too (test_celery): its files stay in the test's folder.
    worker = Worker(
        folder / "worker.log", folder / "mail", env={"QUANYI_BACKUP_DIR": str(folder / "backups")}
    )
    worker.start()
    yield worker
    worker.stop()
