from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.utils.connection import ConnectionDoesNotExist

from dsar import sample_product


class Command(BaseCommand):
    help = (
        "Create the sample health-app product database's tables (idempotent). Runs before the "
        "system checks, which verify the data map against these tables."
    )
    # The data-map check needs these tables; installing them must not depend on it.
    requires_system_checks: list[str] = []  # type: ignore[assignment]

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["install"], help="install: create the tables")
        parser.add_argument(
            "--reset", action="store_true", help="drop the sample tables first (loses their rows)"
        )
        parser.add_argument(
            "--database", default=sample_product.ALIAS, help="database alias (default: product)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            sample_product.install(using=options["database"], reset=options["reset"])
        except DatabaseError as exc:
            raise CommandError(f"could not create the sample product tables: {exc}") from exc
        except (KeyError, ConnectionDoesNotExist):
            raise CommandError(f"unknown database alias {options['database']!r}") from None
        self.stdout.write(f"Sample product tables ready in database {options['database']!r}.")
