from __future__ import annotations

from datetime import date
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import translation

from accounts.models import DataSubject, User
from core.audit import Actor
from retention import termination
from retention.models import ServiceTermination

COMMAND = Actor("system", "terminate_service")


def _messages(exc: ValidationError) -> str:
    return " ".join(str(m) for m in exc.messages)


class Command(BaseCommand):
    help = (
        "Terminate the service (seed 000 §6): announce the stop date, e-mail everyone, and from that "
        "date erase every person's data. Without --yes it only says what would happen. "
        "--status shows progress; --cancel calls it off before erasure starts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--stop-on", help="the day the service stops, YYYY-MM-DD")
        parser.add_argument("--reason", help="why (public: shown in the announcement and the e-mail)")
        parser.add_argument("--yes", action="store_true", help="start it now")
        parser.add_argument("--status", action="store_true", help="show the current termination")
        parser.add_argument("--cancel", action="store_true", help="cancel it (before erasure starts)")
        parser.add_argument("--by", help="e-mail of the DPO's staff account to record as starting it")

    def handle(self, *args: Any, **options: Any) -> None:
        with translation.override("en"):
            if options["status"]:
                self._status()
            elif options["cancel"]:
                self._cancel(options)
            else:
                self._start(options)

    def _user(self, options: dict[str, Any]) -> User | None:
        email = (options.get("by") or "").strip()
        if not email:
            return None
        user = User.objects.filter(email__iexact=email, is_active=True, is_staff=True).first()
        if user is None:
            raise CommandError(f"--by: no active staff account with the e-mail {email!r}.")
        return user

    def _start(self, options: dict[str, Any]) -> None:
        raw, reason = options.get("stop_on"), (options.get("reason") or "").strip()
        if not raw:
            raise CommandError("Give --stop-on YYYY-MM-DD and --reason TEXT (or --status, --cancel).")
        try:
            stop_on = date.fromisoformat(raw.strip())
        except ValueError:
            raise CommandError(
                f"--stop-on {raw!r} is not a date: write it as YYYY-MM-DD, e.g. 2027-03-01."
            ) from None
        if not reason:
            raise CommandError("--reason must say why the service stops (the announcement shows it).")
        user = self._user(options)
        try:
            reason = termination.termination_validate(stop_on=stop_on, reason=reason)
        except ValidationError as exc:
            raise CommandError(_messages(exc)) from None
        people = DataSubject.objects.filter(erased_at__isnull=True).count()
        self.stdout.write(
            f"The service stops on {stop_on}. {termination.reachable_count()} people with an e-mail address "
            f"are told now; from {stop_on} the data of all {people} people is erased "
            "(people under a legal hold are kept and listed)."
        )
        if not options["yes"]:
            self.stdout.write("Nothing started. Run again with --yes to announce it and send the e-mails.")
            return
        try:
            started = termination.termination_start(actor=COMMAND, stop_on=stop_on, reason=reason, user=user)
        except (ValidationError, PermissionDenied) as exc:
            text = _messages(exc) if isinstance(exc, ValidationError) else str(exc)
            raise CommandError(text) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Started {started}: announced at {settings.SITE_URL.rstrip('/')}/service-termination/, "
                "notices are being sent."
            )
        )

    def _cancel(self, options: dict[str, Any]) -> None:
        current = termination.termination_active()
        if current is None:
            raise CommandError("No termination of the service is running.")
        try:
            termination.termination_cancel(termination=current, actor=COMMAND, user=self._user(options))
        except ValidationError as exc:
            raise CommandError(_messages(exc)) from None
        except PermissionDenied as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            self.style.SUCCESS(f"Cancelled {current}: no more e-mails, the announcement is down.")
        )

    def _status(self) -> None:
        current = (
            termination.termination_active() or ServiceTermination.objects.order_by("-started_at").first()
        )
        if current is None:
            self.stdout.write("No termination of the service has been started.")
            return
        campaign = termination.termination_campaign(current)
        self.stdout.write(f"{current}: {current.get_status_display()}; stops on {current.stop_on}.")
        if campaign is not None:
            self.stdout.write(
                f"Notices: {campaign.get_status_display()}, {campaign.sent} of {campaign.targeted} sent, "
                f"{campaign.failed} failed, {campaign.interrupted} interrupted."
            )
        if current.status in (ServiceTermination.Status.ERASING, ServiceTermination.Status.DONE):
            self.stdout.write(
                f"People erased: {current.subjects_erased}; kept under a legal hold: "
                f"{current.subjects_held}; remaining: {current.subjects_remaining}."
            )
        for held in (current.report or {}).get("held", []):
            grounds = ", ".join(f"hold #{h['id']} ({h['ground']})" for h in held["holds"])
            self.stdout.write(f"  kept: DS-{held['subject']:06d} — {grounds}")
