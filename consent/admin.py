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
- A policy version is published by the action "Publish now" (`services.policy_publish`): a
  material one starts the e-mail campaign to every active subject.
- Security incidents are recorded and changed by the DPO (`consent.incidents`); notices,
  the public announcement and closing are actions, each confirmed first and audited. Agents and
  auditors only read them.
- Notice campaigns and their deliveries are read-only records with their progress; whoever holds
  `consent.manage_noticecampaign` (the DPO) may cancel a campaign or deliberately resend
  interrupted or failed e-mails.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from consent import campaigns, incidents, services
from consent.apikeys import api_key_revoke
from consent.forms import GuardianConsentAddForm, PurposeAdminForm, SecurityIncidentAdminForm
from consent.models import (
    ApiKey,
    ConsentEvent,
    ConsentState,
    GuardianConsent,
    IncidentSubject,
    NoticeCampaign,
    NoticeDelivery,
    PolicyResponse,
    PolicyVersion,
    Purpose,
    SecurityIncident,
)
from core.admin import ReadOnlyAdmin, SensitiveFieldsMixin
from core.audit import Actor, audit_log
from core.masking import mask_email, mask_name, mask_phone, shown


def _actor(request: HttpRequest) -> Actor:
    return Actor.of(request.user)


def _user(request: HttpRequest) -> User | None:
    return request.user if isinstance(request.user, User) else None


def confirm_page(
    modeladmin: admin.ModelAdmin,  # type: ignore[type-arg]
    request: HttpRequest,
    *,
    action: str,
    title: str,
    intro: list[str],
    rows: list[tuple[Any, str]],
    button: str,
) -> TemplateResponse:
    """An intermediate page for an action that e-mails many people or cannot be undone."""
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "opts": modeladmin.opts,
        "intro": intro,
        "rows": rows,
        "action": action,
        "button": button,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "changelist_url": reverse(
            f"admin:{modeladmin.opts.app_label}_{modeladmin.opts.model_name}_changelist"
        ),
    }
    return TemplateResponse(request, "admin/consent/confirm_action.html", context)


def subject_pk(term: str) -> int | None:
    """A subject's number as staff type it: DS-000123, ds000123 or 123."""
    value = term.strip().upper().removeprefix("DS").lstrip("-").strip()
    if not value.isdigit() or len(value) > 18:
        return None
    return int(value)


class SubjectNumberSearch:
    """The search box finds a subject's rows by their number (DS-000123), nothing else: the
    other columns are codes or encrypted values."""

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        if not search_term.strip():
            return queryset, False
        pk = subject_pk(search_term)
        return (queryset.filter(subject_id=pk) if pk is not None else queryset.none()), False


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
    list_display = [
        "version",
        "title_zh",
        "effective_at",
        "published_at",
        "material",
        "change_kind",
        "campaign_shown",
    ]
    list_filter = ["material", "change_kind"]
    ordering = ["-version"]
    # Published only through the action, so that a material change always starts its e-mails.
    readonly_fields = ["published_at", "campaign_shown", "created_at"]
    actions = ["publish"]

    def has_publish_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("consent.change_policyversion")

    @admin.display(description=_("notice e-mails"))
    def campaign_shown(self, obj: PolicyVersion) -> str:
        campaign = obj.campaigns.first()
        if campaign is None:
            return "—"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:consent_noticecampaign_change", args=[campaign.pk]),
            _progress_text(campaign),
        )

    @admin.action(description=_("Publish the selected versions now"), permissions=["publish"])
    def publish(self, request: HttpRequest, queryset: QuerySet[PolicyVersion]) -> HttpResponseBase | None:
        versions = list(queryset.filter(published_at__isnull=True).order_by("version"))
        if not versions:
            messages.warning(request, gettext("The selected versions are already published."))
            return None
        if "apply" not in request.POST:
            people = campaigns.reachable_subjects().count()
            rows = [
                (
                    v,
                    ngettext(
                        "material change: the notice is e-mailed to %(n)d person",
                        "material change: the notice is e-mailed to %(n)d people",
                        people,
                    )
                    % {"n": people}
                    if v.material
                    else gettext("not material: published without e-mails"),
                )
                for v in versions
            ]
            return confirm_page(
                self,
                request,
                action="publish",
                title=gettext("Publish privacy policy versions"),
                intro=[
                    gettext(
                        "A published version can no longer be changed. For a material change, every "
                        "active person with an e-mail address is told by e-mail, once, and signed-in "
                        "people see the notice until they accept or decline."
                    )
                ],
                rows=rows,
                button=gettext("Publish now"),
            )
        for version in versions:
            try:
                services.policy_publish(policy=version, actor=_actor(request), user=_user(request))
            except ValidationError as exc:
                messages.error(request, f"v{version.version}: {' '.join(exc.messages)}")
            else:
                messages.success(request, gettext("Version %(v)d is published.") % {"v": version.version})
        return None

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
class ConsentEventAdmin(SubjectNumberSearch, ReadOnlyAdmin):
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


@admin.register(ConsentState)
class ConsentStateAdmin(SubjectNumberSearch, ReadOnlyAdmin):
    list_display = ["subject", "purpose", "granted", "separate", "since"]
    list_filter = ["purpose", "granted", "separate"]
    list_select_related = ["subject", "purpose"]
    search_fields = ["=subject__id"]
    search_help_text = _("Exact subject number, e.g. DS-000123.")
    show_full_result_count = False


# --- Guardians --------------------------------------------------------------------------------------


def _mask_contact(value: str | None) -> str:
    return mask_email(value) if value and "@" in value else mask_phone(value)


@admin.register(GuardianConsent)
class GuardianConsentAdmin(SubjectNumberSearch, SensitiveFieldsMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    sensitive_view_action = "consent.guardian_sensitive_viewed"
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


# --- Notice campaigns and security incidents ------------------------------------------------------

MANAGE_CAMPAIGNS = "consent.manage_noticecampaign"


def _progress_text(campaign: NoticeCampaign) -> str:
    return gettext(
        "%(status)s: %(sent)d of %(targeted)d sent, %(interrupted)d interrupted, %(failed)d failed"
    ) % {
        "status": campaign.get_status_display(),
        "sent": campaign.sent,
        "targeted": campaign.targeted,
        "interrupted": campaign.interrupted,
        "failed": campaign.failed,
    }


def _deliveries_url(campaign: NoticeCampaign, status: str = "") -> str:
    query: dict[str, str | int] = {"campaign__id__exact": campaign.pk}
    if status:
        query["status__exact"] = status
    return reverse("admin:consent_noticedelivery_changelist") + "?" + urlencode(query)


CAMPAIGN_FIELDS: tuple[str, ...] = (
    "kind",
    "policy",
    "incident",
    "termination",
    "status",
    "progress",
    "targeted",
    "sent",
    "interrupted",
    "failed",
    "deliveries",
    "created_by",
    "created_at",
    "started_at",
    "finished_at",
)


@admin.register(NoticeCampaign)
class NoticeCampaignAdmin(ReadOnlyAdmin):
    """Progress of each campaign. Interrupted e-mails (a worker died while sending them) are
    never resent automatically: they may have arrived. Staff decide, per campaign or per person."""

    list_display = [
        "__str__",
        "status",
        "targeted",
        "sent",
        "interrupted",
        "failed",
        "progress",
        "created_at",
        "finished_at",
    ]
    list_filter = ["kind", "status"]
    list_select_related = ["policy", "incident", "termination"]
    ordering = ["-created_at", "-id"]
    fields = CAMPAIGN_FIELDS
    readonly_fields = CAMPAIGN_FIELDS
    actions = ["resend_interrupted", "cancel"]

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(MANAGE_CAMPAIGNS)

    @admin.display(description=_("progress"))
    def progress(self, obj: NoticeCampaign) -> str:
        return format_html(
            '<progress value="{}" max="100">{}%</progress> {}%', obj.percent, obj.percent, obj.percent
        )

    @admin.display(description=_("deliveries"))
    def deliveries(self, obj: NoticeCampaign) -> str:
        return format_html(
            '<a href="{}">{}</a> · <a href="{}">{}</a> · <a href="{}">{}</a>',
            _deliveries_url(obj),
            gettext("all"),
            _deliveries_url(obj, NoticeDelivery.Status.INTERRUPTED),
            gettext("interrupted (%(n)d)") % {"n": obj.interrupted},
            _deliveries_url(obj, NoticeDelivery.Status.FAILED),
            gettext("failed (%(n)d)") % {"n": obj.failed},
        )

    @admin.action(description=_("Resend interrupted and failed e-mails"), permissions=["manage"])
    def resend_interrupted(
        self, request: HttpRequest, queryset: QuerySet[NoticeCampaign]
    ) -> HttpResponseBase | None:
        chosen = list(queryset.order_by("pk"))
        if "apply" not in request.POST:
            return confirm_page(
                self,
                request,
                action="resend_interrupted",
                title=gettext("Resend interrupted and failed e-mails"),
                intro=[
                    gettext(
                        "An interrupted e-mail was being handed to the mail server when a worker "
                        "stopped: the person may have received it. Resending may tell them twice."
                    )
                ],
                rows=[(c, _progress_text(c)) for c in chosen],
                button=gettext("Resend"),
            )
        for campaign in chosen:
            try:
                count = campaigns.deliveries_resend(campaign=campaign, actor=_actor(request))
            except ValidationError as exc:
                messages.error(request, f"{campaign}: {' '.join(exc.messages)}")
            else:
                messages.success(
                    request, gettext("%(c)s: %(n)d e-mail(s) queued again.") % {"c": campaign, "n": count}
                )
        return None

    @admin.action(description=_("Cancel the selected campaigns"), permissions=["manage"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[NoticeCampaign]) -> None:
        for campaign in queryset.order_by("pk"):
            campaigns.campaign_cancel(campaign=campaign, actor=_actor(request))
        messages.success(request, gettext("The selected campaigns are cancelled."))


DELIVERY_FIELDS: tuple[str, ...] = (
    "campaign",
    "subject",
    "status",
    "claimed_at",
    "attempted_at",
    "sent_at",
    "attempts",
    "last_error",
)


@admin.register(NoticeDelivery)
class NoticeDeliveryAdmin(SubjectNumberSearch, ReadOnlyAdmin):
    list_display = list(DELIVERY_FIELDS)
    list_filter = ["status", "campaign"]
    list_select_related = [
        "campaign",
        "campaign__policy",
        "campaign__incident",
        "campaign__termination",
        "subject",
    ]
    search_fields = ["=subject__id"]
    search_help_text = _("Exact subject number, e.g. DS-000123.")
    ordering = ["campaign", "id"]
    show_full_result_count = False
    fields = DELIVERY_FIELDS
    readonly_fields = DELIVERY_FIELDS
    actions = ["resend"]

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(MANAGE_CAMPAIGNS)

    @admin.action(description=_("Resend the selected interrupted or failed e-mails"), permissions=["manage"])
    def resend(self, request: HttpRequest, queryset: QuerySet[NoticeDelivery]) -> HttpResponseBase | None:
        rows = list(
            queryset.filter(status__in=[NoticeDelivery.Status.INTERRUPTED, NoticeDelivery.Status.FAILED])
            .select_related("campaign", "subject")
            .order_by("campaign", "pk")
        )
        if not rows:
            messages.warning(request, gettext("Only interrupted or failed e-mails can be resent."))
            return None
        if "apply" not in request.POST:
            return confirm_page(
                self,
                request,
                action="resend",
                title=gettext("Resend e-mails"),
                intro=[
                    gettext(
                        "An interrupted e-mail may have arrived already: resending may tell the person "
                        "twice. Resend only where you have decided that is better than not at all."
                    )
                ],
                rows=[(row, f"{row.subject} · {row.get_status_display()}") for row in rows],
                button=gettext("Resend"),
            )
        by_campaign: dict[int, list[int]] = {}
        for row in rows:
            by_campaign.setdefault(row.campaign_id, []).append(row.pk)
        total = 0
        for campaign_id, ids in by_campaign.items():
            campaign = NoticeCampaign.objects.get(pk=campaign_id)
            try:
                total += campaigns.deliveries_resend(
                    campaign=campaign, actor=_actor(request), delivery_ids=ids
                )
            except ValidationError as exc:
                messages.error(request, f"{campaign}: {' '.join(exc.messages)}")
        messages.success(request, gettext("%(n)d e-mail(s) queued again.") % {"n": total})
        return None


INCIDENT_RECORD_FIELDS = [
    "affected_count",
    "status",
    "notified_at",
    "announced_at",
    "public_link",
    "campaign_shown",
    "closed_at",
    "created_by",
    "created_at",
    "updated_at",
]


@admin.register(SecurityIncident)
class SecurityIncidentAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = SecurityIncidentAdminForm
    list_display = [
        "__str__",
        "title_zh",
        "status",
        "discovered_at",
        "affected_count",
        "announced_at",
        "reported_to_regulator_at",
    ]
    list_filter = ["status"]
    search_fields = ["title_zh", "title_en"]
    ordering = ["-discovered_at", "-id"]
    readonly_fields = INCIDENT_RECORD_FIELDS
    actions = ["notify", "announce", "close"]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        people = ["affected_count"]
        if self.has_change_permission(request, obj):
            people.append("add_emails")
        return [
            (
                _("What happened"),
                {
                    "fields": [
                        "title_zh",
                        "title_en",
                        "what_happened_zh",
                        "what_happened_en",
                        "occurred_at",
                        "discovered_at",
                    ]
                },
            ),
            (
                _("Information concerned and possible impact"),
                {"fields": ["categories", "impact_zh", "impact_en"]},
            ),
            (
                _("Measures, advice, remedies and contact"),
                {
                    "fields": [
                        "measures_zh",
                        "measures_en",
                        "advice_zh",
                        "advice_en",
                        "remedies_zh",
                        "remedies_en",
                        "contact",
                    ]
                },
            ),
            (_("Regulator"), {"fields": ["reported_to_regulator_at", "regulator"]}),
            (_("Affected people"), {"fields": people}),
            (
                _("Notices"),
                {
                    "fields": [
                        "status",
                        "notified_at",
                        "announced_at",
                        "public_link",
                        "campaign_shown",
                        "closed_at",
                    ]
                },
            ),
            (_("Record"), {"fields": ["created_by", "created_at", "updated_at"]}),
        ]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.status == SecurityIncident.Status.CLOSED:
            return False  # a closed incident is a record
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("affected people"))
    def affected_count(self, obj: SecurityIncident) -> int:
        return IncidentSubject.objects.filter(incident=obj).count() if obj.pk else 0

    @admin.display(description=_("public announcement"))
    def public_link(self, obj: SecurityIncident) -> str:
        if not obj.pk or obj.announced_at is None:
            return "—"
        url = reverse("consent:incident", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, url)

    @admin.display(description=_("notice e-mails"))
    def campaign_shown(self, obj: SecurityIncident) -> str:
        campaign = obj.campaigns.first() if obj.pk else None
        if campaign is None:
            return "—"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:consent_noticecampaign_change", args=[campaign.pk]),
            _progress_text(campaign),
        )

    def save_model(self, request: HttpRequest, obj: SecurityIncident, form: Any, change: bool) -> None:
        incidents.incident_save(
            incident=obj, actor=_actor(request), user=_user(request), changed=form.changed_data
        )
        people = form.cleaned_data.get("add_emails") or []
        if people:
            added = incidents.incident_subjects_add(
                incident=obj, subjects=people, actor=_actor(request), user=_user(request)
            )
            messages.info(request, gettext("%(n)d affected person(s) added.") % {"n": added})

    @admin.action(description=_("E-mail the notice to the affected people"), permissions=["change"])
    def notify(self, request: HttpRequest, queryset: QuerySet[SecurityIncident]) -> HttpResponseBase | None:
        chosen = list(queryset.order_by("pk"))
        if "apply" not in request.POST:
            rows = []
            for incident in chosen:
                missing = incidents.incident_missing_parts(incident)
                reachable = campaigns.reachable_subjects().filter(security_incidents=incident).count()
                note = (
                    gettext("cannot be sent yet, fill in: %(fields)s") % {"fields": ", ".join(missing)}
                    if missing
                    else gettext("%(n)d of %(all)d affected people have an e-mail address")
                    % {"n": reachable, "all": self.affected_count(incident)}
                )
                rows.append((incident, note))
            return confirm_page(
                self,
                request,
                action="notify",
                title=gettext("E-mail the incident notice"),
                intro=[
                    gettext(
                        "Each affected person is e-mailed once, in their language: what happened, the "
                        "information concerned, the possible impact, our measures, advice, remedies and "
                        "how to contact us. People added later are told when you send again."
                    )
                ],
                rows=rows,
                button=gettext("Send the notices"),
            )
        for incident in chosen:
            try:
                campaign = incidents.incident_notify(
                    incident=incident, actor=_actor(request), user=_user(request)
                )
            except ValidationError as exc:
                messages.error(request, f"{incident}: {' '.join(exc.messages)}")
            else:
                messages.success(
                    request,
                    gettext("%(i)s: notices are being sent (%(c)s).") % {"i": incident, "c": campaign},
                )
        return None

    @admin.action(description=_("Publish the public announcement"), permissions=["change"])
    def announce(self, request: HttpRequest, queryset: QuerySet[SecurityIncident]) -> HttpResponseBase | None:
        chosen = list(queryset.order_by("pk"))
        if "apply" not in request.POST:
            return confirm_page(
                self,
                request,
                action="announce",
                title=gettext("Publish the public announcement"),
                intro=[
                    gettext(
                        "The announcement is public at /incidents/ for anyone to read, for when telling "
                        "each person is impracticable. Make sure its texts name no person."
                    )
                ],
                rows=[(i, i.localised("title", "zh")) for i in chosen],
                button=gettext("Publish"),
            )
        for incident in chosen:
            try:
                incidents.incident_announce(incident=incident, actor=_actor(request))
            except ValidationError as exc:
                messages.error(request, f"{incident}: {' '.join(exc.messages)}")
            else:
                messages.success(request, gettext("%(i)s: the announcement is public.") % {"i": incident})
        return None

    @admin.action(description=_("Close the selected incidents"), permissions=["change"])
    def close(self, request: HttpRequest, queryset: QuerySet[SecurityIncident]) -> None:
        for incident in queryset.order_by("pk"):
            incidents.incident_close(incident=incident, actor=_actor(request))
        messages.success(request, gettext("The selected incidents are closed."))


@admin.register(IncidentSubject)
class IncidentSubjectAdmin(SubjectNumberSearch, ReadOnlyAdmin):
    list_display = ["incident", "subject", "added_at", "added_by"]
    list_filter = ["incident"]
    list_select_related = ["incident", "subject", "added_by"]
    search_fields = ["=subject__id"]
    search_help_text = _("Exact subject number, e.g. DS-000123.")
    show_full_result_count = False
