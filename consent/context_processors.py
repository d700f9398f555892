from __future__ import annotations

from django.http import HttpRequest


def policy_notice(request: HttpRequest) -> dict[str, object]:
    """The material-change notice for a signed-in subject who has not answered it yet."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or user.is_staff:
        return {}
    from accounts.models import DataSubject
    from consent.services import policy_notice_due

    subject = DataSubject.objects.filter(user=user).first()
    policy = policy_notice_due(subject) if subject else None
    if policy is None:
        return {}
    from django.utils import translation

    return {
        "policy_notice": policy,
        "policy_notice_summary": policy.localised("summary", translation.get_language() or "zh-hans"),
        "policy_notice_previous": max(policy.version - 1, 1),
    }
