"""Staff roles, as Django groups. A migration creates them; later migrations call
`roles_sync` again when an app adds permissions. The README lists this table."""

from __future__ import annotations

from typing import Any

AGENT, DPO, AUDITOR = "agent", "dpo", "auditor"

_READ = [
    "accounts.view_datasubject",
    "core.view_auditentry",
    "dsar.view_datasubjectrequest",
    "dsar.view_requestmessage",
    "dsar.view_calendarday",
    "dsar.view_calendaryear",
    "dsar.view_dataexport",
    "consent.view_consentevent",
    "consent.view_consentstate",
    "consent.view_purpose",
    "consent.view_policyversion",
    "consent.view_guardianconsent",
    "consent.view_policyresponse",
    "consent.view_noticecampaign",
    "consent.view_noticedelivery",
    "consent.view_securityincident",
    "consent.view_incidentsubject",
    "retention.view_erasure",
    "retention.view_legalhold",
    "retention.view_tombstone",
    "retention.view_retentionrule",
    "retention.view_sweeprun",
    "retention.view_childdatafinding",
    "retention.view_servicetermination",
    "core.view_recipient",
    "core.view_disclosure",
    "core.view_recipientnotice",
]
_WORK = [
    "consent.add_guardianconsent",
    "dsar.work_request",
    "dsar.view_verification",
    "dsar.view_verificationdocument",
    "retention.confirm_erasure",
    # Mark manual recipient notices done (with a note) and retry failing ones.
    "core.handle_recipientnotice",
    # Close a finding of a child's data without guardian consent once it is dealt with.
    "retention.change_childdatafinding",
]

ROLES: dict[str, list[str]] = {
    # Privacy agents work requests (verify, ask, start, answer, refuse, assign to themselves);
    # they read subjects masked, and the audit trail.
    AGENT: [*_READ, *_WORK],
    # The data-protection officer: everything an agent can, plus reassigning, editing the
    # working-day calendar, unmasked data, accounts, editing subjects and the machinery.
    DPO: [
        *_READ,
        *_WORK,
        "dsar.reassign_request",
        "retention.add_legalhold",
        "retention.change_legalhold",
        "retention.add_retentionrule",
        "retention.change_retentionrule",
        "core.add_recipient",
        "core.change_recipient",
        "consent.add_purpose",
        "consent.change_purpose",
        "consent.add_policyversion",
        "consent.change_policyversion",
        # Security incidents: record, add affected people, notify, announce, close.
        "consent.add_securityincident",
        "consent.change_securityincident",
        # Cancel a notice campaign; resend interrupted or failed e-mails (a deliberate choice:
        # an interrupted one may have arrived).
        "consent.manage_noticecampaign",
        "consent.view_apikey",
        "consent.add_apikey",
        "consent.change_apikey",
        "dsar.add_calendarday",
        "dsar.change_calendarday",
        "dsar.delete_calendarday",
        "accounts.view_sensitive",
        "accounts.change_datasubject",
        "accounts.view_user",
        "core.view_jobstate",
        "core.view_outboxmessage",
        "retention.view_backup",
        # Start (or, before erasure begins, cancel) the termination of the service.
        "retention.start_termination",
    ],
    # Auditors read everything and change nothing.
    AUDITOR: [
        *_READ,
        "accounts.view_user",
        "core.view_jobstate",
        "core.view_outboxmessage",
        "retention.view_backup",
        "consent.view_apikey",
    ],
}


def roles_sync(apps: Any) -> dict[str, list[str]]:
    """Make each group hold exactly its listed permissions. Returns what was missing."""
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    missing: dict[str, list[str]] = {}
    for name, perms in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        found = []
        for dotted in perms:
            app_label, codename = dotted.split(".", 1)
            perm = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if perm is None:
                missing.setdefault(name, []).append(dotted)
            else:
                found.append(perm)
        group.permissions.set(found)
    return missing


def roles_install(apps: Any, *, using: str = "default") -> dict[str, list[str]]:
    """Create every app's permissions now (Django normally does it after migrate), then the
    groups. Called by data migrations, and by the test suite after a flush."""
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, apps=apps, verbosity=0, using=using)
    return roles_sync(apps)
