from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.http import HttpRequest

from accounts import services
from core.audit import Actor


class AccountAdapter(DefaultAccountAdapter):
    """allauth customised through services: every account holder gets a data subject."""

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return bool(getattr(settings, "QUANYI_SIGNUP_OPEN", True))

    def save_user(self, request: HttpRequest, user: Any, form: Any, commit: bool = True) -> Any:
        user = super().save_user(request, user, form, commit=False)
        user.email = user.email.lower()
        lang = getattr(request, "LANGUAGE_CODE", "") or settings.LANGUAGE_CODE
        if lang in dict(settings.LANGUAGES):
            user.language = lang
        if commit:
            user.save()
            phone = (getattr(form, "cleaned_data", None) or {}).get("phone", "")
            services.subject_create(
                actor=Actor("user", str(user.pk)),
                user=user,
                email=user.email,
                phone=phone,
                language=user.language,
            )
        return user
