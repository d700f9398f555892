"""The staff side of consent.

- Purposes and privacy-policy versions are edited by whoever holds the model permissions (the
  DPO). A published policy version is evidence of what people agreed to: it is read-only, and
  nothing here deletes a purpose or a version (ledger events point at them).
- The consent ledger and the current state are read-only for everyone: events come from the
  portal, the API and `consent.services`, never from a form.
- A guardian's consent is added through `consent.services.guardian_consent_record` and is
  read-only afterwards; the guardian's name and contact are masked unless the viewer holds
  `accounts.view_sensitive` (each unmasked view is audited).
- API keys are listed without their hash; there is no way to read a secret here.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from consent import services
from consent.apikeys import api_key_revoke
from consent.forms import GuardianConsentAddForm, PurposeAdminForm
from consent.models import (
    ApiKey,
    ConsentEvent,
    ConsentState,
    GuardianConsent,
    PolicyResponse,
    PolicyVersion,
    Purpose,
)
from core.admin import ReadOnlyAdmin, SensitiveFieldsMixin
from core.audit import Actor, audit_log
from core.masking import mask_email, mask_name, mask_phone, shown


def _actor(request: HttpRequest) -> Actor:
    return Actor.of(request.user)


def subject_pk(term: str) -> int | None:
    """A subject's number as staff type it: DS-000123, ds000123 or 123."""
    value = term.strip().upper().removeprefix("DS").lstrip("-").strip()
    if not value.isdigit() or len(value) > 18:
        return None
    return int(value)


# --- Purposes and policy versions (DPO) -----------------------------------------------------------


@admin.register(Purpose)
class PurposeAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = PurposeAdminForm
    filter_horizontal = ["shares_with"]
    list_display = [
        "code",
        "name_zh",
        "name_en",
        "legal_basis",
        "required",
        "sensitive",
        "marketing",
        "active",
    ]
    list_filter = ["legal_basis", "required", "sensitive", "marketing", "active"]
    search_fields = ["code", "name_zh", "name_en"]
    ordering = ["order", "code"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # The code is what the product's API calls send: renaming it would orphan them.
        return ["code"] if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the ledger refers to it; switch it off with "active" instead

    def save_model(self, request: HttpRequest, obj: Purpose, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit_log(
            actor=_actor(request),
            action="consent.purpose_changed" if change else "consent.purpose_added",
            obj=obj,
            data={"code": obj.code, "fields": sorted(form.changed_data)},
        )


@admin.register(PolicyVersion)
class PolicyVersionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["version", "title_zh", "effective_at", "published_at", "material", "change_kind"]
    list_filter = ["material", "change_kind"]
    ordering = ["-version"]
    readonly_fields = ["created_at"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.published_at is not None:
            return False  # what people agreed to never changes; publish a new version
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: PolicyVersion, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit_log(
            actor=_actor(request),
            action="consent.policy_changed" if change else "consent.policy_added",
            obj=obj,
            data={
                "version": obj.version,
                "published": obj.published_at is not None,
                "fields": sorted(form.changed_data),
            },
        )


# --- The ledger (read-only) -------------------------------------------------------------------------


EVENT_FIELDS: tuple[str, ...] = (
    "receipt_id",
    "occurred_at",
    "subject",
    "purpose",
    "policy_version",
    "action",
    "channel",
    "separate",
    "actor",
    "reason",
    "evidence_ip",
    "evidence_user_agent",
)


@admin.register(ConsentEvent)
class ConsentEventAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "subject", "purpose", "action", "channel", "separate", "policy_version"]
    list_filter = ["purpose", "action", "channel", "separate"]
    list_select_related = ["subject", "purpose", "policy_version"]
    # Marks the search box as present; the search itself is `get_search_results` (exact only).
    search_fields = ["=subject__id"]
    search_help_text = _("Exact subject number, e.g. DS-000123.")
    ordering = ["-occurred_at", "-id"]
    show_full_result_count = False
    fields = EVENT_FIELDS
    readonly_fields = EVENT_FIELDS

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ConsentEvent], search_term: str
    ) -> tuple[QuerySet[ConsentEvent], bool]:
        if not search_term.strip():
            return queryset, False
        pk = subject_pk(search_term)
        return (queryset.filter(subject_id=pk) if pk is not None else queryset.none()), False


@admin.register(ConsentState)
class ConsentStateAdmin(ReadOnlyAdmin):
    list_display = ["subject", "purpose", "granted", "separate", "since"]
    list_filter = ["purpose", "granted", "separate"]
    list_select_related = ["subject", "purpose"]
    search_fields = ["=subject__id"]
    search_help_text = _("Exact subject number, e.g. DS-000123.")
    show_full_result_count = False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ConsentState], search_term: str
    ) -> tuple[QuerySet[ConsentState], bool]:
        if not search_term.strip():
            return queryset, False
        pk = subject_pk(search_term)
        return (queryset.filter(subject_id=pk) if pk is not None else queryset.none()), False


# --- Guardians --------------------------------------------------------------------------------------


def _mask_contact(value: str | None) -> str:
    return mask_email(value) if value and "@" in value else mask_phone(value)


@admin.register(GuardianConsent)
class GuardianConsentAdmin(SensitiveFieldsMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "subject",
        "guardian_name_shown",
        "relationship",
        "verification",
        "recorded_at",
        "revoked_at",
    ]
    list_filter = ["verification"]
    list_select_related = ["subject"]
    search_fields = ["=subject__id"]
    search_help_text = _("Exact subject number, e.g. DS-000123.")
    raw_id_fields = ["subject", "guardian_user"]
    shown_fields = [
        "subject",
        "guardian_name_shown",
        "relationship",
        "guardian_contact_shown",
        "verification",
        "guardian_user",
        "recorded_by",
        "recorded_at",
        "revoked_at",
    ]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[GuardianConsent], search_term: str
    ) -> tuple[QuerySet[GuardianConsent], bool]:
        if not search_term.strip():
            return queryset, False
        pk = subject_pk(search_term)
        return (queryset.filter(subject_id=pk) if pk is not None else queryset.none()), False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a record of what was checked; it is revoked, never edited

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = GuardianConsentAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return list(GuardianConsentAddForm.Meta.fields)
        return list(self.shown_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return list(self.shown_fields) if obj is not None else []

    @admin.display(description=_("guardian name"))
    def guardian_name_shown(self, obj: GuardianConsent) -> str:
        value = obj.guardian_name
        return shown(value, mask_name, unmasked=getattr(obj, "unmasked", False))

    @admin.display(description=_("guardian contact"))
    def guardian_contact_shown(self, obj: GuardianConsent) -> str:
        value = obj.guardian_contact
        return shown(value, _mask_contact, unmasked=getattr(obj, "unmasked", False))

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        if obj is not None and getattr(obj, "unmasked", False):
            audit_log(actor=_actor(request), action="consent.guardian_sensitive_viewed", obj=obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request: HttpRequest, obj: GuardianConsent, form: Any, change: bool) -> None:
        # Only the add form reaches here (changes are not permitted). The service writes the
        # record and its audit entry; the admin then only needs the new primary key.
        data = form.cleaned_data
        user = request.user
        record = services.guardian_consent_record(
            subject=data["subject"],
            actor=_actor(request),
            guardian_name=data["guardian_name"],
            relationship=data["relationship"],
            guardian_contact=data["guardian_contact"],
            verification=data["verification"],
            recorded_by=user if isinstance(user, User) else None,
            guardian_user=data.get("guardian_user"),
        )
        obj.pk = record.pk
        obj.recorded_at = record.recorded_at
        obj.recorded_by = record.recorded_by


# --- API keys ---------------------------------------------------------------------------------------


API_KEY_FIELDS: tuple[str, ...] = ("name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at")


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    """Keys are issued by a command that shows the secret once; only its hash is stored, and
    the hash is not shown here either."""

    list_display = ["name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    fields = API_KEY_FIELDS
    readonly_fields = API_KEY_FIELDS
    actions = ["revoke"]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not request.user.has_perm("consent.change_apikey"):
            actions.pop("revoke", None)
        return actions

    @admin.action(description=_("Revoke the selected keys now"))
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        if not request.user.has_perm("consent.change_apikey"):
            raise PermissionDenied
        for key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(key=key, actor=Actor.of(request.user))
        self.message_user(request, _("The selected keys are revoked."))


@admin.register(PolicyResponse)
class PolicyResponseAdmin(ReadOnlyAdmin):
    """Answers to material-change notices: evidence, never edited."""

    list_display = ["subject", "policy_version", "decision", "at"]
    list_filter = ["decision", "policy_version"]
    show_full_result_count = False
