"""Portal forms for requesters. They parse and bound the input; the services decide."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.utils.functional import Promise
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts.forms import PHONE_HELP, clean_phone
from dsar.corrections import MAX_REASON as MAX_CORRECTION_REASON
from dsar.corrections import MAX_VALUE as MAX_CORRECTION_VALUE
from dsar.corrections import Correctable
from dsar.models import OnBehalf, RequestType

MAX_DETAILS = 5000
MAX_NAME = 200
MAX_RELATIONSHIP = 100
MAX_DOCUMENTS = 5
REFERENCE_MAX = 20

# What each right means, in the requester's words (shown on the type chooser and the form).
TYPE_EXPLANATIONS: dict[str, Promise] = {
    RequestType.ACCESS: _(
        "Find out which of your personal information we hold, where it came from and how we use it."
    ),
    RequestType.COPY: _("Receive a copy of your personal information, for example your records."),
    RequestType.PORTABILITY: _(
        "Have your personal information sent to another provider you name, in a common format."
    ),
    RequestType.CORRECTION: _(
        "Have wrong or incomplete information about you corrected or completed. Say what is wrong."
    ),
    RequestType.DELETION: _(
        "Have your personal information deleted where the law allows, for example when it is no "
        "longer needed or you withdrew your consent."
    ),
    RequestType.CONSENT_WITHDRAWAL: _(
        "Withdraw a consent you gave, or narrow what it covers. Earlier processing stays lawful."
    ),
    RequestType.RESTRICTION: _(
        "Limit how we process your information, or object to a use of it such as marketing."
    ),
    RequestType.CANCELLATION: _(
        "Close your account. Your information is then deleted or anonymised as the privacy policy says."
    ),
    RequestType.EXPLANATION: _(
        "Have our processing rules explained, or an automated decision that affects you explained "
        "and reviewed by a person."
    ),
}

PROOF_HELP = _(
    "Acting for someone else: attach proof of your authority (for example a birth certificate, a "
    "death certificate with proof of kinship, or a signed authorisation). PDF, JPEG or PNG, at most "
    "5 MB each."
)


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files under one name (Django's documented pattern). Content checks are the
    service's job (`document_check`): it reads the bytes, not the name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": ".pdf,.jpg,.jpeg,.png"}))
        kwargs.setdefault("required", False)
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile]:
        files = data if isinstance(data, list | tuple) else [data] if data else []
        if len(files) > MAX_DOCUMENTS:
            raise ValidationError(
                _("Attach at most %(n)d files.") % {"n": MAX_DOCUMENTS}, code="too_many_files"
            )
        single = super().clean
        return [single(f, initial) for f in files]


def apply_service_errors(form: forms.Form, exc: ValidationError) -> None:
    """Put a service's ValidationError on the form: known fields get theirs, the rest goes
    to the top of the form."""
    if hasattr(exc, "error_dict"):
        for field, messages in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, messages)
    else:
        form.add_error(None, exc.messages)


class _OnBehalfMixin(forms.Form):
    on_behalf = forms.ChoiceField(
        label=_("I am asking for"), choices=OnBehalf.choices, initial=OnBehalf.SELF, widget=forms.RadioSelect
    )
    subject_name = forms.CharField(
        label=_("Name of the person the request is about"), required=False, max_length=MAX_NAME
    )
    subject_email = forms.EmailField(label=_("Their e-mail address, if they have one"), required=False)
    relationship = forms.CharField(
        label=_("Your relationship to them"),
        required=False,
        max_length=MAX_RELATIONSHIP,
        help_text=_("For example: mother, son, lawyer."),
    )
    documents = MultipleFileField(label=_("Proof of your authority"), help_text=PROOF_HELP)

    BEHALF_FIELDS = ("subject_name", "subject_email", "relationship", "documents")

    def main_fields(self) -> list[forms.BoundField]:
        return [f for f in self.visible_fields() if f.name not in self.BEHALF_FIELDS]

    def behalf_fields(self) -> list[forms.BoundField]:
        """Shown in a group of their own: they matter only when acting for someone else."""
        return [f for f in self.visible_fields() if f.name in self.BEHALF_FIELDS]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("on_behalf", OnBehalf.SELF) != OnBehalf.SELF:
            if not (data.get("subject_name") or "").strip():
                self.add_error("subject_name", _("Name the person you are acting for."))
            if not (data.get("relationship") or "").strip():
                self.add_error("relationship", _("Say how you are related to them."))
        return data


class SubjectRequestForm(_OnBehalfMixin):
    """A signed-in subject's request: the account says who is asking."""

    field_order = ["details", "on_behalf", "subject_name", "subject_email", "relationship", "documents"]

    details = forms.CharField(
        label=_("What is your request about?"),
        required=False,
        max_length=MAX_DETAILS,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=_("Optional for most requests. Do not include more personal information than needed."),
    )


class PublicRequestForm(_OnBehalfMixin):
    """A request from someone without an account: contact details come from the form and are
    confirmed with an e-mailed code."""

    field_order = [
        "name",
        "email",
        "phone",
        "details",
        "on_behalf",
        "subject_name",
        "subject_email",
        "relationship",
        "documents",
    ]

    name = forms.CharField(label=_("Your name"), max_length=MAX_NAME)
    email = forms.EmailField(
        label=_("Your e-mail address"),
        help_text=_("We send a 6-digit code to confirm it, and write to you there about the request."),
    )
    phone = forms.CharField(label=_("Your phone"), required=False, max_length=32, help_text=PHONE_HELP)
    details = forms.CharField(
        label=_("What is your request about?"),
        max_length=MAX_DETAILS,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=_("Which service, which records. Do not include more personal information than needed."),
    )

    def clean_phone(self) -> str:
        return clean_phone(self.cleaned_data.get("phone", ""))


class CodeForm(forms.Form):
    code = forms.RegexField(
        label=_("6-digit code"),
        regex=r"^\s*\d{6}\s*$",
        max_length=12,
        error_messages={"invalid": _("Enter the 6 digits from the e-mail.")},
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "one-time-code"}),
    )

    def clean_code(self) -> str:
        return str(self.cleaned_data["code"]).strip()


class FindRequestForm(forms.Form):
    reference = forms.CharField(
        label=_("Reference"),
        max_length=REFERENCE_MAX,
        help_text=_("As in the e-mail we sent, e.g. DSR-2026-000123."),
    )
    email = forms.EmailField(label=_("The e-mail address you used"))

    def clean_reference(self) -> str:
        return str(self.cleaned_data["reference"]).strip().upper()


class ProvideInfoForm(forms.Form):
    message = forms.CharField(
        label=_("Your answer"),
        required=False,
        max_length=MAX_DETAILS,
        widget=forms.Textarea(attrs={"rows": 5}),
    )
    documents = MultipleFileField(label=_("Documents"), help_text=_("PDF, JPEG or PNG, at most 5 MB each."))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not (data.get("message") or "").strip() and not data.get("documents"):
            raise ValidationError(_("Add a message or a document."))
        return data


class CorrectionForm(forms.Form):
    """New values for the subject's correctable fields, each with the value held now (theirs to
    see) and an optional reason. Fields left empty are not changed. The services check each
    value against its field; their messages come back onto the field they are about."""

    def __init__(self, *args: Any, fields: Sequence[Correctable], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.correctables = list(fields)
        for c in self.correctables:
            self.fields[self.value_name(c)] = forms.CharField(
                label=c.name, required=False, max_length=MAX_CORRECTION_VALUE
            )
            self.fields[self.reason_name(c)] = forms.CharField(
                label=_("Why (optional)"),
                required=False,
                max_length=MAX_CORRECTION_REASON,
                widget=forms.TextInput(attrs={"aria-label": f"{c.name}: {gettext('why (optional)')}"}),
            )

    @staticmethod
    def value_name(c: Correctable) -> str:
        return f"new:{c.key}"

    @staticmethod
    def reason_name(c: Correctable) -> str:
        return f"why:{c.key}"

    def rows(self) -> list[dict[str, Any]]:
        """One row per field, in sections (the place, and the record where there are several)."""
        return [
            {"field": c, "value": self[self.value_name(c)], "reason": self[self.reason_name(c)]}
            for c in self.correctables
        ]

    def _proposed(self) -> list[Correctable]:
        return [c for c in self.correctables if (self.cleaned_data.get(self.value_name(c)) or "").strip()]

    def changes(self) -> list[dict[str, Any]]:
        return [
            {
                "target": c.target,
                "table": c.table,
                "column": c.column,
                "row": c.row,
                "value": self.cleaned_data[self.value_name(c)],
                "reason": self.cleaned_data.get(self.reason_name(c), ""),
            }
            for c in self._proposed()
        ]

    def apply_change_errors(self, errors: Sequence[Mapping[str, Sequence[str]]]) -> None:
        """Put the services' per-change messages on the fields the changes came from."""
        for c, field_errors in zip(self._proposed(), errors, strict=False):
            for key, messages in field_errors.items():
                name = self.reason_name(c) if key == "reason" else self.value_name(c)
                self.add_error(name, list(messages))


MAX_CANCELLATION_REASON = 1000


class CancellationForm(forms.Form):
    """Confirming an account cancellation. The reason is optional: nobody has to explain
    why they leave."""

    reason = forms.CharField(
        label=_("Why are you leaving? (optional)"),
        required=False,
        max_length=MAX_CANCELLATION_REASON,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Only if you want to tell us. It does not change anything about the cancellation."),
    )
