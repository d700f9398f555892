"""Scheduled jobs that run at most once per slot, however many beats fire them.

A job claims its row with a conditional UPDATE (`claimed_until < now`); a second beat
started by mistake, or a message delivered twice, finds the claim taken and does nothing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NamedTuple, ParamSpec, TypeVar

from django.db.models import F, Q
from django.utils import timezone

from core.maintenance import maintenance_active
from core.models import JobState

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
SKIPPED = "skipped"
ALERT = "alert"


class JobOutcome(NamedTuple):
    """What a job returns when its run needs a person's attention (`status` ALERT): the job
    ran, but found something wrong. /healthz and the admin show it until a later run is fine."""

    status: str
    detail: str


def job_claim(name: str, *, hold: timedelta) -> bool:
    now = timezone.now()
    JobState.objects.get_or_create(name=name)
    return (
        JobState.objects.filter(name=name)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now))
        .update(claimed_until=now + hold, last_started_at=now, runs=F("runs") + 1)
        == 1
    )


def job_finish(name: str, *, status: str, detail: str = "") -> None:
    JobState.objects.filter(name=name).update(
        last_finished_at=timezone.now(), last_status=status, last_detail=detail[:2000]
    )


def singleton_job(name: str, *, every: timedelta) -> Callable[[Callable[P, R]], Callable[P, R | str]]:
    """Run the wrapped function at most once per `every` (claimed for 90% of it)."""
    hold = every * 0.9

    def decorate(func: Callable[P, R]) -> Callable[P, R | str]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | str:
            if maintenance_active():  # a restore is replaying erasures: touch nothing
                log.warning("job %s: maintenance flag set, skipping", name)
                return SKIPPED
            if not job_claim(name, hold=hold):
                log.info("job %s: already claimed for this slot, skipping", name)
                return SKIPPED
            try:
                result = func(*args, **kwargs)
            except Exception as exc:
                job_finish(name, status="failed", detail=type(exc).__name__)
                raise
            if isinstance(result, JobOutcome):
                job_finish(name, status=result.status, detail=result.detail)
            else:
                job_finish(name, status="ok", detail=str(result))
            return result

        return wrapper

    return decorate


def job_ran(name: str) -> None:
    """Record a run of a job that needs no claim (the heartbeat: running it twice is harmless)."""
    now = timezone.now()
    JobState.objects.get_or_create(name=name)
    JobState.objects.filter(name=name).update(
        last_started_at=now, last_finished_at=now, last_status="ok", runs=F("runs") + 1
    )


def job_alerts() -> list[JobState]:
    """Jobs whose last run raised an alarm (e.g. a broken audit chain), for the admin banner."""
    return list(JobState.objects.filter(last_status=ALERT).order_by("name"))


def job_states() -> dict[str, dict[str, Any]]:
    return {
        j.name: {"last_finished_at": j.last_finished_at, "last_status": j.last_status}
        for j in JobState.objects.all()
    }
