from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.audit import SYSTEM
from dsar.services import calendar_import


class Command(BaseCommand):
    help = (
        "Load a year's official holiday schedule from JSON: "
        '{"year": 2027, "holidays": {"2027-01-01": "元旦"}, "workdays": {"2027-02-20": "春节调休"}}. '
        "Idempotent; every provisional deadline is then recomputed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="path of the JSON schedule")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CommandError(f"No such file: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read {path}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise CommandError(f"{path} is not valid JSON: {exc}") from None
        try:
            result = calendar_import(actor=SYSTEM, payload=payload, source=f"import_workdays {path.name}")
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        if result.created:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Loaded {result.year}: {result.holidays} holiday(s), "
                    f"{result.workdays} adjusted working day(s). Provisional deadlines are being recomputed."
                )
            )
        else:
            self.stdout.write(
                f"{result.year} was already loaded with exactly this schedule; nothing changed."
            )
