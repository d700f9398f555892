from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from consent.models import ConsentEvent, GuardianConsent, LegalBasis, Purpose
from core.datamap import Category


def switchable_purposes() -> Any:
    """Purposes a person may switch on and off: consent-based and not required for the service."""
    return Purpose.objects.filter(active=True, legal_basis=LegalBasis.CONSENT, required=False)


class ConsentChoiceForm(forms.Form):
    """One purpose's switch on the consents page. The sensitive-information checkbox is checked
    by the service too; the form only carries it."""

    purpose = forms.ModelChoiceField(
        queryset=Purpose.objects.none(), to_field_name="code", widget=forms.HiddenInput
    )
    action = forms.ChoiceField(
        choices=[
            (ConsentEvent.Action.GRANT, _("give consent")),
            (ConsentEvent.Action.WITHDRAW, _("withdraw consent")),
        ]
    )
    separate = forms.BooleanField(
        required=False,
        label=_(
            "I separately consent to the processing of this sensitive personal information for this purpose."
        ),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["purpose"]
        assert isinstance(field, forms.ModelChoiceField)  # noqa: S101 - narrows the type
        field.queryset = switchable_purposes()


class PolicyDiffForm(forms.Form):
    a = forms.IntegerField(min_value=1, max_value=2_000_000_000)
    b = forms.IntegerField(min_value=1, max_value=2_000_000_000)


# --- Admin ------------------------------------------------------------------------------------


class PurposeAdminForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Purpose
        fields = [
            "code",
            "name_zh",
            "name_en",
            "description_zh",
            "description_en",
            "legal_basis",
            "required",
            "sensitive",
            "marketing",
            "categories",
            "recipients",
            "shares_with",
            "retention",
            "active",
            "order",
        ]

    def clean_categories(self) -> list[str]:
        value = self.cleaned_data.get("categories") or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise forms.ValidationError(_("Give a list of category codes."))
        unknown = sorted(set(value) - set(Category.values))
        if unknown:
            raise forms.ValidationError(
                _("Unknown categories: %(codes)s. Use: %(known)s.")
                % {"codes": ", ".join(unknown), "known": ", ".join(Category.values)}
            )
        return value

    def clean_recipients(self) -> list[str]:
        value = self.cleaned_data.get("recipients") or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise forms.ValidationError(_("Give a list of recipient names."))
        return value


class GuardianConsentAddForm(forms.ModelForm):  # type: ignore[type-arg]
    """The fields a staff member fills in; the record itself is written by the service."""

    guardian_name = forms.CharField(label=_("guardian name"), max_length=200)
    guardian_contact = forms.CharField(
        label=_("guardian contact"),
        max_length=200,
        help_text=_("E-mail address or phone number of the guardian."),
    )

    class Meta:
        model = GuardianConsent
        fields = [
            "subject",
            "guardian_name",
            "relationship",
            "guardian_contact",
            "verification",
            "guardian_user",
        ]
