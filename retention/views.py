from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from retention.termination import stop_moment, termination_announced


@require_GET
def termination(request: HttpRequest) -> HttpResponse:
    """The public announcement that the service stops (seed 000 §6): the date, why, and what
    happens to personal information. Nothing about any person."""
    found = termination_announced()
    if found is None:
        raise Http404
    context = {
        "termination": found,
        "stop_moment": stop_moment(found),
        "business_tz": settings.QUANYI_BUSINESS_TZ,
    }
    return render(request, "retention/termination.html", context)
