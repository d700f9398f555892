from __future__ import annotations

from allauth.mfa.utils import is_mfa_enabled
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
