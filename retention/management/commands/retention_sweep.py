from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from core.sources import SourceMapError
from retention import services
from retention.models import SweepRun


class Command(BaseCommand):
    help = (
        "Apply the retention rules now: delete, anonymise or restrict what is past its period "
        "(legal holds excepted) and list children's data without guardian consent. "
        "--dry-run says what would happen and changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count per rule and table; change nothing")
        parser.add_argument(
            "--batch", type=int, default=None, help="rows per batch (default QUANYI_RETENTION_BATCH)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run, batch = options["dry_run"], options["batch"]
        if batch is not None and batch < 1:
            raise CommandError("--batch must be a whole number of rows, at least 1.")
        verbosity = int(options["verbosity"])

        def progress(level: int, line: str) -> None:
            if level <= verbosity:
                self.stdout.write(line)

        if dry_run:
            self.stdout.write("Dry run: nothing is changed.")
        try:
            run = services.retention_sweep(dry_run=dry_run, batch=batch, progress=progress)
        except SourceMapError as exc:
            raise CommandError(f"The data map cannot be used: {exc}") from exc
        except DatabaseError as exc:
            raise CommandError(f"The sweep stopped on a database error: {exc}") from exc
        self.stdout.write(self._summary(run))

    def _summary(self, run: SweepRun) -> str:
        units = run.counts.get("units", {})
        rows = sum(int(u["rows"]) for u in units.values())
        busy = [label for label, u in units.items() if u["status"] in ("busy", "lost")]
        lines = []
        verb = "would change" if run.dry_run else "changed"
        lines.append(f"{rows} rows {verb} in {len(units)} rule/table units (sweep #{run.pk}).")
        if busy:
            lines.append(f"Left to another sweep that holds them: {', '.join(busy)}.")
        children = run.counts.get("children")
        if children:
            found = "would be found" if run.dry_run else "found"
            lines.append(
                f"Children under 14 without guardian consent: {children['found']} new {found}, "
                f"{children['resolved']} resolved, {children['open']} open."
            )
        return "\n".join(lines)
