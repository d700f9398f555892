from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from core.datamap import rows


class Command(BaseCommand):
    help = "Print the personal-data map: each personal field, its category, sensitivity, export and erasure."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=["table", "json"], default="table")

    def handle(self, *args: Any, **options: Any) -> None:
        data = rows()
        if options["format"] == "json":
            self.stdout.write(json.dumps(data, ensure_ascii=False, indent=2))
            return
        cols = ["source", "field", "category", "sensitive", "export", "erase"]
        widths = {c: max(len(c), *(len(str(r[c])) for r in data)) for c in cols}
        line = "  ".join(c.ljust(widths[c]) for c in cols)
        self.stdout.write(line)
        self.stdout.write("  ".join("-" * widths[c] for c in cols))
        for r in data:
            self.stdout.write("  ".join(str(r[c]).ljust(widths[c]) for c in cols))
        self.stdout.write(f"\n{len(data)} personal field(s).")
