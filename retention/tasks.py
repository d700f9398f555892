from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from core.jobs import singleton_job
from core.outbox import OutboxTask
from retention import backups, erasure, services, termination


# Long erasures outlive the default time limit; the lease lets another worker take over a
# crashed run, so the limit is generous.
@shared_task(base=OutboxTask, name="retention.tasks.run_erasure", time_limit=3600, soft_time_limit=3500)
def run_erasure(erasure_id: int) -> str:
    return erasure.erasure_run(erasure_id=erasure_id)


@shared_task(name="retention.tasks.erasures_resume", time_limit=300, soft_time_limit=280)
@singleton_job("erasures-resume", every=timedelta(seconds=60))
def erasures_resume() -> int:
    return erasure.erasures_resume()


# pg_dump of a large database outlives the default time limit.
@shared_task(name="retention.tasks.backup_nightly", time_limit=4 * 3600, soft_time_limit=4 * 3600 - 60)
@singleton_job("backup-nightly", every=timedelta(hours=24))
def backup_nightly() -> str:
    return backups.backup_nightly()


# A long first sweep (years of rows) outlives the default limit; units are resumable, so a
# run stopped by the limit is continued by the next day's.
@shared_task(name="retention.tasks.retention_sweep", time_limit=4 * 3600, soft_time_limit=4 * 3600 - 60)
@singleton_job("retention-sweep", every=timedelta(hours=24))
def retention_sweep() -> str:
    overdue = services.holds_review_alert()  # first: a sweep that fails must not silence it
    run = services.retention_sweep()
    rows = sum(int(u["rows"]) for u in run.counts.get("units", {}).values())
    found = run.counts.get("children", {}).get("found", 0)
    return f"sweep {run.pk}: {rows} rows; {found} new child finding(s); {overdue} hold(s) overdue for review"


# Erases people one after another for up to termination.TIME_BUDGET_SECONDS; one person's large
# erasure may run longer, so the limit is generous (the termination's lease covers a crash).
@shared_task(name="retention.tasks.service_termination", time_limit=3600, soft_time_limit=3500)
@singleton_job("service-termination", every=timedelta(seconds=60))
def service_termination() -> str:
    return termination.termination_step()
