from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from core.datamap import Category
from core.models import Recipient
from core.recipients import MIN_SECRET_LENGTH, webhook_secret_check


class RecipientAdminForm(forms.ModelForm):  # type: ignore[type-arg]
    """The DPO's form. The webhook secret is write-only: typing one replaces the stored secret;
    leaving the field empty keeps it. The stored secret is never put into the page."""

    categories = forms.MultipleChoiceField(
        label=_("categories of personal information"),
        choices=Category.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
    # https is assumed when the scheme is left out: plain http is refused outside development.
    webhook_url = forms.URLField(
        label=_("webhook URL"),
        max_length=500,
        required=False,
        assume_scheme="https",
        help_text=_(
            "Where signed notices are POSTed. Leave empty to handle this recipient's notices by hand."
        ),
    )
    new_webhook_secret = forms.CharField(
        label=_("new webhook secret"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_(
            "At least %(n)d characters, agreed with the recipient, who uses it to verify the "
            "X-Quanyi-Signature header. Leave empty to keep the current secret."
        )
        % {"n": MIN_SECRET_LENGTH},
    )

    class Meta:
        model = Recipient
        fields = [
            "code",
            "name",
            "kind",
            "purpose",
            "legal_basis",
            "categories",
            "country",
            "contact_email",
            "webhook_url",
            "active",
        ]

    def clean_new_webhook_secret(self) -> str:
        value: str = self.cleaned_data.get("new_webhook_secret") or ""
        if not value:
            return ""
        try:
            return webhook_secret_check(value)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["webhook_secret"]) from exc

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        has_secret = bool(self.instance.webhook_secret) or bool(data.get("new_webhook_secret"))
        if data.get("webhook_url") and not has_secret and "new_webhook_secret" not in self.errors:
            self.add_error("new_webhook_secret", _("A webhook needs a secret to sign its notices."))
        return data


class NoticeMarkDoneForm(forms.Form):
    note = forms.CharField(
        label=_("how the recipient was told"),
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text=_(
            "Channel, date and the recipient's confirmation, e.g. “e-mailed the recipient's privacy "
            "contact on 3 March, deletion confirmed by reply”. Write no personal data here."
        ),
    )
