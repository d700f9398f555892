from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dsar.workdays import DEADLINE_WORKING_DAYS, workday_index


class Command(BaseCommand):
    help = "Print the due date of a request whose requester was verified on DATE (YYYY-MM-DD)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("date", help="the day identity was verified, YYYY-MM-DD")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            verified = date.fromisoformat(options["date"])
        except ValueError:
            raise CommandError(f"'{options['date']}' is not a date; use YYYY-MM-DD.") from None
        try:
            d = workday_index().deadline(verified)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        line = (
            f"{d.due_date.isoformat()} 23:59:59 "
            f"({DEADLINE_WORKING_DAYS} working days after {verified.isoformat()})"
        )
        if d.provisional:
            years = ", ".join(str(y) for y in d.missing_years)
            line += f" provisional: no official schedule loaded for {years}"
        self.stdout.write(line)
