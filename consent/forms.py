from __future__ import annotations

from typing import Any

from django import forms
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _

from consent.incidents import subjects_by_email
from consent.models import ConsentEvent, GuardianConsent, LegalBasis, Purpose, SecurityIncident
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


class SecurityIncidentAdminForm(forms.ModelForm):  # type: ignore[type-arg]
    """The DPO's form. Affected people are added by pasting their e-mail addresses; an address
    that matches nobody is an error, so nothing is half-added."""

    categories = forms.MultipleChoiceField(
        label=_("categories of personal information affected"),
        choices=Category.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
    add_emails = forms.CharField(
        label=_("add affected people by e-mail"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_(
            "One address per line (or separated by commas or spaces): the profile or account "
            "e-mail of each affected person."
        ),
    )
    MAX_EMAILS = 5000

    class Meta:
        model = SecurityIncident
        fields = [
            "title_zh",
            "title_en",
            "what_happened_zh",
            "what_happened_en",
            "occurred_at",
            "discovered_at",
            "categories",
            "impact_zh",
            "impact_en",
            "measures_zh",
            "measures_en",
            "advice_zh",
            "advice_en",
            "remedies_zh",
            "remedies_en",
            "contact",
            "reported_to_regulator_at",
            "regulator",
        ]

    def clean_add_emails(self) -> list[Any]:
        raw = (self.cleaned_data.get("add_emails") or "").replace(",", " ").replace(";", " ").split()
        if len(raw) > self.MAX_EMAILS:
            raise forms.ValidationError(_("At most %(n)d addresses at a time.") % {"n": self.MAX_EMAILS})
        bad = []
        for email in raw:
            try:
                validate_email(email)
            except forms.ValidationError:
                bad.append(email)
        if bad:
            raise forms.ValidationError(_("Not e-mail addresses: %(list)s.") % {"list": ", ".join(bad[:20])})
        subjects, missing = subjects_by_email(raw)
        if missing:
            raise forms.ValidationError(
                _("Nobody has these addresses: %(list)s. Remove them and save again.")
                % {"list": ", ".join(missing[:20])}
            )
        return subjects
