from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail


def alert_dpo(*, subject: str, body: str) -> int:
    """E-mail every active member of the `dpo` group (an operational alarm, no personal data)."""
    recipients = list(
        get_user_model().objects.filter(is_active=True, groups__name="dpo").values_list("email", flat=True)
    )
    if not recipients:
        return 0
    return send_mail(f"[Quanyi] {subject}", body, settings.DEFAULT_FROM_EMAIL, recipients)
