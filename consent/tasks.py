from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from consent import campaigns
from core.jobs import singleton_job
from core.outbox import OutboxTask


# One step of a notice campaign: a stretch of choosing people, or one batch of e-mails. The
# step holds the campaign's lease and stops taking e-mails after half of it, well within the
# time limit; a step killed anyway is taken over when the lease runs out.
@shared_task(base=OutboxTask, name="consent.tasks.campaign_step")
def campaign_step(campaign_id: int, token: str | None = None) -> str:
    return campaigns.campaign_step(campaign_id=campaign_id, token=token)


@shared_task(name="consent.tasks.campaigns_resume", time_limit=120, soft_time_limit=110)
@singleton_job("notice-campaigns", every=timedelta(seconds=60))
def campaigns_resume() -> int:
    return campaigns.campaigns_resume()
