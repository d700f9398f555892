from __future__ import annotations

from django.http import HttpRequest
from django.utils import timezone


def service_termination(request: HttpRequest) -> dict[str, object]:
    """The banner on every portal page from the moment the termination is announced (one
    query on a small table; nothing once it is cancelled). `service_stopped`: its stop date
    has come (sign-up is closed then)."""
    from retention.termination import stop_moment, termination_announced

    found = termination_announced()
    if found is None:
        return {}
    return {"service_termination": found, "service_stopped": timezone.now() >= stop_moment(found)}
