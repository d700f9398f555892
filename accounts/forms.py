from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

PHONE_HELP = _("Optional. Mainland mobile numbers, e.g. 138 0013 8000.")


def clean_phone(value: str) -> str:
    digits = "".join(ch for ch in value if ch.isdigit())
    if value and not 7 <= len(digits) <= 15:
        raise forms.ValidationError(_("Enter a valid phone number."))
    return value.strip()


class SignupExtraForm(forms.Form):
    """Extra signup fields. allauth calls `signup` after the user is saved; the subject
    itself is created by the adapter, which reads `phone` from this form's data."""

    phone = forms.CharField(label=_("Phone"), required=False, max_length=32, help_text=PHONE_HELP)

    def clean_phone(self) -> str:
        return clean_phone(self.cleaned_data.get("phone", ""))

    def signup(self, request: HttpRequest, user: Any) -> None:
        return None
