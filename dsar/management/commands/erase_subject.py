from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import translation

from accounts.models import User
from accounts.services import subject_find, subject_for_user
from core.audit import Actor
from dsar import erasure, services
from dsar.models import RequestType, VerificationMethod
from retention.models import Erasure

COMMAND = Actor("system", "erase_subject")


class Command(BaseCommand):
    help = (
        "Erase a person on staff's instruction, through the same path as a deletion request: "
        "record the request, show the plan, and with --yes confirm it and erase now."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email", help="the person's e-mail address (account or profile)")
        parser.add_argument("--reason", required=True, help="why (kept with the request; no personal data)")
        parser.add_argument("--yes", action="store_true", help="confirm the plan and erase now")

    def handle(self, *args: Any, **options: Any) -> None:
        email = options["email"].strip().lower()
        reason = options["reason"].strip()
        if not reason:
            raise CommandError("--reason must say why.")
        subject = subject_find(email=email)
        if subject is None:
            user = User.objects.filter(email=email).first()
            subject = subject_for_user(user=user) if user is not None else None
        if subject is None:
            raise CommandError(f"No person with the e-mail {email!r}.")
        if subject.is_erased:
            raise CommandError(f"{subject} has already been erased.")
        plan = (
            Erasure.objects.filter(
                subject=subject, origin=Erasure.Origin.COMMAND, status=Erasure.Status.PLANNED
            )
            .order_by("-pk")
            .first()
        )
        try:
            if plan is None:
                with transaction.atomic():
                    request = services.request_submit(
                        actor=COMMAND,
                        type=RequestType.DELETION,
                        subject=subject,
                        details=f"[erase_subject] {reason}",
                        language=subject.language,
                    )
                    request = services.request_verify(
                        request=request, actor=COMMAND, method=VerificationMethod.STAFF
                    )
                    plan = erasure.request_erasure_plan(
                        request=request, actor=COMMAND, origin=Erasure.Origin.COMMAND
                    )
                self.stdout.write(f"Recorded deletion request {request.reference} for {subject}.")
            else:
                plan = erasure.request_erasure_replan(
                    request=services.DataSubjectRequest.objects.get(reference=plan.reference), actor=COMMAND
                )
                self.stdout.write(f"Using the open plan of request {plan.reference}.")
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self._print_plan(plan)
        if plan.plan.get("blocked"):
            raise CommandError("A legal hold on this person blocks the erasure; release it first.")
        if not options["yes"]:
            self.stdout.write("Nothing erased yet. Run again with --yes to confirm this plan and erase.")
            return
        try:
            # Run here, not by a worker: staff watch it finish (a crash leaves it to the resume sweep).
            erasure.request_erasure_confirm(
                request=services.DataSubjectRequest.objects.get(reference=plan.reference),
                actor=COMMAND,
                enqueue=False,
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        outcome = erasure.run_erasure(erasure_id=plan.pk)
        plan.refresh_from_db()
        if plan.status != Erasure.Status.DONE:
            raise CommandError(f"The erasure did not finish here ({outcome}); a worker will resume it.")
        self.stdout.write(
            self.style.SUCCESS(
                f"Erased: {plan.rows_done} records processed; backups roll over by {plan.backups_until}."
            )
        )

    def _print_plan(self, plan: Erasure) -> None:
        self.stdout.write("Plan:")
        with translation.override("en"):
            lines = erasure.report_lines(plan.plan, "en")
        for line in lines:
            rows = f" ({line.rows} records)" if line.rows else ""
            why = f" — {line.why}" if line.why else ""
            self.stdout.write(f"  {line.label}{rows}: {line.outcome}{why}")
