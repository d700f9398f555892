from __future__ import annotations

from django.http import HttpRequest


def service_termination(request: HttpRequest) -> dict[str, object]:
    """The banner on every portal page from the moment the termination is announced (one
    query on a small table; nothing once it is cancelled)."""
    from retention.termination import termination_announced

    found = termination_announced()
    return {"service_termination": found} if found is not None else {}
