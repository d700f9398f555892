from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _

from accounts import services
from core.audit import Actor


class AccountAdapter(DefaultAccountAdapter):
    """allauth customised through services: every account holder gets a data subject."""

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        """Closed by QUANYI_SIGNUP_OPEN, and from the stop date of a service termination on (an
        account made then would only be erased; account/signup_closed.html says why)."""
        if not getattr(settings, "QUANYI_SIGNUP_OPEN", True):
            return False
        # retention builds on accounts: the termination is looked up when someone signs up.
        from retention.termination import termination_stopped

        return termination_stopped() is None

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

    def post_login(self, request: HttpRequest, user: Any, **kwargs: Any) -> HttpResponse:
        """After every complete sign-in (password, second factor if any; also in the headless
        API): signing in during the cooling-off undoes a pending account cancellation. The
        credentials that just worked are the evidence that the holder wants the account."""
        response = super().post_login(request, user, **kwargs)
        if not user.is_staff:
            # dsar builds on accounts, never the other way round at import time: the service
            # is looked up when a sign-in happens.
            from dsar.cancellation import cancellation_undo_on_login

            if cancellation_undo_on_login(user=user) is not None:
                messages.success(
                    request,
                    _("Welcome back: signing in has undone the cancellation of your account."),
                )
        return response
