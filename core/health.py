"""What /healthz reports: the databases, the broker, the worker's heartbeat and the last run of
every scheduled job.

Load-balancer semantics: only what makes this instance useless (its own databases, the broker)
is a failure (503); everything else — a stale worker, an overdue job, an unreachable product
database — is "degraded" and answered with 200, so one slow worker never takes the web out of
rotation. Nothing here may leak a secret: errors are reported by exception class only, and the
broker by its transport name, never its URL.
"""

from __future__ import annotations

import concurrent.futures
import copy
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from celery.schedules import crontab
from celery.schedules import schedule as interval_schedule
from django.conf import settings
from django.db import connections
from django.utils import timezone
from kombu import Connection

from core.maintenance import maintenance_active
from core.models import Heartbeat, JobState

OK, DEGRADED, FAIL = "ok", "degraded", "fail"
# Quanyi's own databases: without them no page works. Product databases are only read by
# exports and erasures, which wait and retry, so losing one degrades the service.
CORE_DATABASES = ("default", "keystore")
# Statuses a job records (core.jobs) that need a person.
BAD_JOB_STATUSES = frozenset({"failed", "alert"})


@dataclass
class Health:
    checks: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    failed: bool = False

    @property
    def status(self) -> str:
        if self.failed:
            return FAIL
        return DEGRADED if self.problems else OK

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "checks": self.checks, "problems": self.problems}


def _database(alias: str) -> str:
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
        return OK
    except Exception as exc:  # report, do not raise: this page must always answer
        return type(exc).__name__


def _broker_connect(url: str, timeout: float) -> None:
    options = dict(getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {})
    options.update(socket_timeout=timeout, socket_connect_timeout=timeout)
    with Connection(url, connect_timeout=timeout, transport_options=options) as conn:
        conn.ensure_connection(max_retries=0, timeout=max(int(timeout), 1))
        if conn.transport_cls == "filesystem":  # no server: "reachable" means its folders are there
            for key in ("data_folder_in", "data_folder_out", "control_folder"):
                folder = options.get(key)
                if folder and not os.path.isdir(folder):
                    raise FileNotFoundError(key)


def broker_check(url: str | None = None, *, timeout: float | None = None) -> dict[str, Any]:
    """One connection attempt with a short timeout, on a thread with a hard deadline as well,
    so a broker that accepts the connection and then says nothing never hangs the page."""
    url = url or settings.CELERY_BROKER_URL
    timeout = timeout if timeout is not None else settings.QUANYI_HEALTH_BROKER_TIMEOUT
    transport = url.split("://", 1)[0] if "://" in url else "unknown"
    started = time.monotonic()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="healthz-broker")
    try:
        pool.submit(_broker_connect, url, timeout).result(timeout=timeout + 0.5)
        status = OK
    except concurrent.futures.TimeoutError:
        status = "Timeout"
    except Exception as exc:
        status = type(exc).__name__
    finally:
        pool.shutdown(wait=False)
    return {"status": status, "transport": transport, "seconds": round(time.monotonic() - started, 3)}


def _as_schedule(value: Any) -> Any:
    if isinstance(value, int | float):
        return interval_schedule(timedelta(seconds=value))
    if isinstance(value, timedelta):
        return interval_schedule(value)
    return value


def _grace(sched: Any) -> timedelta:
    """How late a job may be before it counts as overdue: half its interval (at least five
    minutes: beat and a busy worker are not punctual), an hour for calendar (crontab) jobs."""
    if isinstance(sched, crontab) or not hasattr(sched, "run_every"):
        return timedelta(hours=1)
    return max(timedelta(minutes=5), sched.run_every / 2)


def job_overdue(schedule: Any, last_run: datetime, *, now: datetime | None = None) -> bool:
    sched = copy.copy(_as_schedule(schedule))  # never touch the schedule in settings
    at = now or timezone.now()
    sched.nowfun = lambda: at
    return bool(sched.remaining_estimate(last_run) < -_grace(sched))


def jobs_check(now: datetime) -> tuple[dict[str, Any], list[str]]:
    states = {j.name: j for j in JobState.objects.all()}
    jobs: dict[str, Any] = {}
    problems: list[str] = []
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        state = states.get(name)
        last_run = state.last_started_at if state else None
        overdue = bool(last_run and job_overdue(entry["schedule"], last_run, now=now))
        last_status = state.last_status if state else ""
        jobs[name] = {
            "last_run": last_run.isoformat() if last_run else None,
            "last_finished": state.last_finished_at.isoformat() if state and state.last_finished_at else None,
            "last_status": last_status or None,
            "overdue": overdue,
        }
        if overdue:
            problems.append(f"job {name} is overdue")
        if last_status in BAD_JOB_STATUSES:
            problems.append(f"job {name}: last run {last_status}")
    return jobs, problems


def worker_check(now: datetime) -> dict[str, Any]:
    at = Heartbeat.objects.filter(source="worker").values_list("at", flat=True).first()
    if at is None:
        return {"status": "missing", "last_seen": None, "age_seconds": None}
    age = max((now - at).total_seconds(), 0.0)
    status = OK if age <= settings.QUANYI_HEARTBEAT_STALE_SECONDS else "stale"
    return {"status": status, "last_seen": at.isoformat(), "age_seconds": int(age)}


def health_report() -> Health:
    health = Health()
    now = timezone.now()
    for alias in settings.DATABASES:
        result = _database(alias)
        health.checks[alias] = result
        if result != OK:
            if alias in CORE_DATABASES:
                health.failed = True
            else:
                health.problems.append(f"database {alias}: {result}")
    broker = broker_check()
    health.checks["broker"] = broker
    if broker["status"] != OK:
        health.failed = True
    # Answered even during maintenance (the only page that is): monitoring sees why users get 503.
    health.checks["maintenance"] = maintenance_active()
    if health.failed and any(health.checks[a] != OK for a in CORE_DATABASES):
        health.problems.append("a Quanyi database is down")
        return health  # the rest is read from the database
    if broker["status"] != OK:
        health.problems.append(f"broker: {broker['status']}")
    worker = worker_check(now)
    health.checks["worker"] = worker
    health.checks["worker_heartbeat"] = worker["last_seen"]
    if worker["status"] != OK:
        health.problems.append(f"worker heartbeat {worker['status']}")
    health.checks["jobs"], problems = jobs_check(now)
    health.problems.extend(problems)
    return health
