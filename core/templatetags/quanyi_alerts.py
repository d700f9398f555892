"""The admin's alert banner: jobs whose last run raised an alarm (core.jobs.ALERT)."""

from __future__ import annotations

from typing import Any

from django import template

from core.jobs import job_alerts

register = template.Library()


@register.inclusion_tag("admin/core/job_alerts.html", takes_context=True)
def job_alert_banner(context: dict[str, Any]) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    if not (user and user.is_authenticated and user.is_staff):
        return {"alerts": []}
    return {"alerts": job_alerts()}
