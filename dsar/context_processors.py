from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from dsar.cancellation import cancellation_state


def account_cancellation(request: HttpRequest) -> dict[str, object]:
    """The banner of a signed-in subject whose account cancellation is pending: the date and
    an undo button on every portal page (one indexed query; nothing for anyone else)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or user.is_staff:
        return {}
    state = cancellation_state(user=user)
    if state is None:
        return {}
    return {"account_cancellation": state, "cancellation_tz": settings.QUANYI_BUSINESS_TZ}
