from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseBase
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from core import recipients
from core.audit import Actor, audit_log
from core.crypto import CryptoError
from core.forms import NoticeMarkDoneForm, RecipientAdminForm
from core.masking import VIEW_SENSITIVE, mask_reference, shown
from core.models import (
    AuditEntry,
    Disclosure,
    JobState,
    NoticeStatus,
    OutboxMessage,
    Recipient,
    RecipientNotice,
)


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Records of what happened: nobody edits or deletes them through the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SensitiveFieldsMixin:
    """Marks the object of a detail page `unmasked` when the staff member holds
    `accounts.view_sensitive`; display methods pass that to core.masking.shown. A page that
    shows personal data in clear writes `sensitive_view_action` to the audit log (when set and
    `shows_sensitive(obj)` says there is something to show)."""

    sensitive_view_action = ""

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        obj = super().get_object(request, object_id, from_field)  # type: ignore[misc]
        if obj is not None:
            obj.unmasked = request.user.has_perm(VIEW_SENSITIVE)
        return obj

    def shows_sensitive(self, obj: Any) -> bool:
        return True

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        if (
            obj is not None
            and self.sensitive_view_action
            and getattr(obj, "unmasked", False)
            and self.shows_sensitive(obj)
        ):
            audit_log(actor=Actor.of(request.user), action=self.sensitive_view_action, obj=obj)
        return super().render_change_form(request, context, add, change, form_url, obj)  # type: ignore[misc]


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["seq", "at", "action", "actor_type", "actor_id", "object_type", "object_id"]
    list_filter = ["action", "actor_type", "object_type"]
    search_fields = ["=object_id", "=actor_id", "action"]
    show_full_result_count = False
    ordering = ["-seq"]


@admin.register(JobState)
class JobStateAdmin(ReadOnlyAdmin):
    list_display = ["name", "last_started_at", "last_finished_at", "last_status", "runs"]


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = ["task_name", "created_at", "dispatched_at", "attempts", "completed_at", "last_error"]
    list_filter = ["task_name"]
    show_full_result_count = False


# --- The disclosure register -------------------------------------------------------------------
#
# Recipients are edited by the DPO; the webhook secret is write-only (the page says whether one is
# set, never what it is). Disclosures and notices are records: read-only, except that staff with
# `core.handle_recipientnotice` mark manual notices done (with a note) or retry failing ones, each
# through a `core.recipients` service that writes the audit entry.

HANDLE_NOTICES = "core.handle_recipientnotice"
DISCLOSURE_FIELDS: tuple[str, ...] = (
    "recipient",
    "subject",
    "categories",
    "first_at",
    "last_at",
    "external_ref_shown",
)
NOTICE_FIELDS: tuple[str, ...] = (
    "recipient",
    "subject",
    "kind",
    "reference",
    "idempotency_key",
    "status",
    "attempts",
    "next_attempt_at",
    "last_status_code",
    "last_error",
    "delivered_at",
    "created_at",
    "handled_by",
    "handled_at",
    "handled_note",
    "payload_shown",
    "personal_shown",
)


def _subject_pk(term: str) -> int | None:
    value = term.strip().upper().removeprefix("DS").lstrip("-").strip()
    return int(value) if value.isdigit() and len(value) <= 18 else None


@admin.register(Recipient)
class RecipientAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = RecipientAdminForm
    list_display = ["code", "name", "kind", "legal_basis", "country", "has_webhook", "active"]
    list_filter = ["kind", "legal_basis", "active"]
    search_fields = ["code", "name"]
    ordering = ["code"]
    fieldsets = [
        (None, {"fields": ["code", "name", "kind", "purpose", "legal_basis", "categories", "country"]}),
        (
            _("Notices"),
            {
                "fields": [
                    "contact_email",
                    "webhook_url",
                    "webhook_secret_state",
                    "new_webhook_secret",
                    "active",
                ]
            },
        ),
        (_("Record"), {"fields": ["created_at", "updated_at"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # The code is what calling code and the audit log name the recipient by.
        fixed = ["webhook_secret_state", "created_at", "updated_at"]
        return ["code", *fixed] if obj is not None else fixed

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # disclosures and notices refer to it; switch it off with "active"

    @admin.display(description=_("webhook"), boolean=True)
    def has_webhook(self, obj: Recipient) -> bool:
        return bool(obj.webhook_url)

    @admin.display(description=_("webhook secret"))
    def webhook_secret_state(self, obj: Recipient) -> str:
        return gettext("set") if obj.has_webhook_secret else gettext("not set")

    def save_model(self, request: HttpRequest, obj: Recipient, form: Any, change: bool) -> None:
        recipients.recipient_save(
            recipient=obj,
            actor=Actor.of(request.user),
            webhook_secret=form.cleaned_data.get("new_webhook_secret") or None,
            changed=form.changed_data,
        )


@admin.register(Disclosure)
class DisclosureAdmin(SensitiveFieldsMixin, ReadOnlyAdmin):
    sensitive_view_action = "disclosure.sensitive_viewed"
    list_display = ["recipient", "subject", "categories", "first_at", "last_at"]
    list_filter = ["recipient"]
    list_select_related = ["recipient", "subject"]
    search_fields = ["=subject__id"]
    search_help_text = _("Exact subject number, e.g. DS-000123.")
    ordering = ["-last_at", "-id"]
    show_full_result_count = False
    fields = DISCLOSURE_FIELDS
    readonly_fields = DISCLOSURE_FIELDS

    def get_queryset(self, request: HttpRequest) -> QuerySet[Disclosure]:
        # The list never decrypts the references; the detail page loads its one on demand.
        return super().get_queryset(request).defer("external_ref")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Disclosure], search_term: str
    ) -> tuple[QuerySet[Disclosure], bool]:
        if not search_term.strip():
            return queryset, False
        pk = _subject_pk(search_term)
        return (queryset.filter(subject_id=pk) if pk is not None else queryset.none()), False

    @admin.display(description=_("the recipient's reference for the person"))
    def external_ref_shown(self, obj: Disclosure) -> str:
        return shown(obj.external_ref, mask_reference, unmasked=getattr(obj, "unmasked", False))


@admin.register(RecipientNotice)
class RecipientNoticeAdmin(SensitiveFieldsMixin, ReadOnlyAdmin):
    # Agents who handle manual notices see the recipient's reference in clear too (get_object).
    sensitive_view_action = "recipient_notice.sensitive_viewed"
    list_display = [
        "created_at",
        "recipient",
        "kind",
        "reference",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
    ]
    list_filter = ["status", "kind", "recipient"]
    list_select_related = ["recipient"]
    search_fields = ["=reference"]
    search_help_text = _("Exact reference, e.g. DSR-2026-000123.")
    ordering = ["-created_at", "-id"]
    show_full_result_count = False
    actions = ["mark_done", "retry_now"]
    fields = NOTICE_FIELDS
    readonly_fields = NOTICE_FIELDS

    def has_handle_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(HANDLE_NOTICES)

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            # Whoever handles a manual notice needs to tell the recipient who the person is.
            obj.unmasked = request.user.has_perm(VIEW_SENSITIVE) or (
                obj.status == NoticeStatus.MANUAL and request.user.has_perm(HANDLE_NOTICES)
            )
        return obj

    @admin.display(description=_("payload (as sent, without the personal part)"))
    def payload_shown(self, obj: RecipientNotice) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, ensure_ascii=False))

    @admin.display(description=_("how the recipient finds the person"))
    def personal_shown(self, obj: RecipientNotice) -> str:
        if not obj.personal_sealed:
            return gettext("— (cleared once the notice was delivered or done)")
        try:
            personal = recipients.notice_personal(obj)
        except CryptoError:
            return gettext("— (cannot be opened with the configured master keys)")
        unmasked = getattr(obj, "unmasked", False)
        lines = [
            gettext("reference at the recipient: %(ref)s")
            % {"ref": shown(personal.get("external_ref"), mask_reference, unmasked=unmasked)}
        ]
        for name, value in sorted((personal.get("fields") or {}).items()):
            lines.append(f"{name}: {shown(value, mask_reference, unmasked=unmasked)}")
        return format_html("<pre>{}</pre>", "\n".join(lines))

    def shows_sensitive(self, obj: RecipientNotice) -> bool:
        return bool(obj.personal_sealed)

    @admin.action(description=_("Mark done (manual notice)"), permissions=["handle"])
    def mark_done(self, request: HttpRequest, queryset: QuerySet[RecipientNotice]) -> HttpResponseBase | None:
        notices = list(queryset.select_related("recipient").order_by("pk"))
        if "apply" in request.POST:
            form = NoticeMarkDoneForm(request.POST)
            if form.is_valid():
                done = skipped = 0
                for notice in notices:
                    if notice.status not in (NoticeStatus.MANUAL, NoticeStatus.PENDING):
                        skipped += 1
                        continue
                    try:
                        recipients.notice_mark_done(
                            notice=notice, actor=Actor.of(request.user), note=form.cleaned_data["note"]
                        )
                    except ValidationError:
                        skipped += 1
                    else:
                        done += 1
                if done:
                    messages.success(request, gettext("%(n)d notice(s) marked done.") % {"n": done})
                if skipped:
                    messages.warning(
                        request,
                        gettext("%(n)d notice(s) skipped: already delivered, done or being sent.")
                        % {"n": skipped},
                    )
                return None
        else:
            form = NoticeMarkDoneForm()
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Mark recipient notices done"),
            "opts": self.opts,
            "notices": notices,
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/core/recipientnotice/mark_done.html", context)

    @admin.action(description=_("Retry now"), permissions=["handle"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[RecipientNotice]) -> None:
        queued = skipped = 0
        for notice in queryset.select_related("recipient").order_by("pk"):
            before = notice.status
            try:
                after = recipients.notice_retry(notice=notice, actor=Actor.of(request.user))
            except ValidationError as exc:
                skipped += 1
                messages.warning(
                    request, f"{notice.reference} → {notice.recipient.code}: {' '.join(exc.messages)}"
                )
                continue
            if before in (NoticeStatus.PENDING, NoticeStatus.MANUAL) and after.status == NoticeStatus.PENDING:
                queued += 1
            else:
                skipped += 1
        if queued:
            messages.success(request, gettext("%(n)d notice(s) queued for delivery now.") % {"n": queued})
        if skipped:
            messages.info(request, gettext("%(n)d notice(s) not retried.") % {"n": skipped})
