from __future__ import annotations

from allauth.account.models import EmailAddress
from allauth.mfa.utils import is_mfa_enabled
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.services import subject_for_user
from core.masking import mask_phone


def home(request: HttpRequest) -> HttpResponse:
    context: dict[str, object] = {}
    if request.user.is_authenticated and not request.user.is_staff:
        subject = subject_for_user(user=request.user)  # type: ignore[arg-type]
        context.update(subject=subject, masked_phone=mask_phone(subject.phone))
    if request.user.is_authenticated:
        context["mfa_enabled"] = is_mfa_enabled(request.user)
    return render(request, "portal/home.html", context)


@login_required
def account(request: HttpRequest) -> HttpResponse:
    """Account settings (账号设置): sign-in e-mail, password, two-factor authentication and,
    for data subjects, cancelling the account (its pages belong to dsar: a request)."""
    context: dict[str, object] = {
        "mfa_enabled": is_mfa_enabled(request.user),
        "primary_email": EmailAddress.objects.filter(user_id=request.user.pk, primary=True)
        .values_list("email", flat=True)
        .first()
        or getattr(request.user, "email", ""),
    }
    return render(request, "portal/account.html", context)
