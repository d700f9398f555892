"""`python -m benchmarks [name ...]`: run every bench_*.py module on throw-away test databases,
print one table and write benchmarks/results.json."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import sys
from pathlib import Path
from typing import Any

import django

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.conf import settings
    from django.test.utils import get_runner

    # Measured as production runs: with DEBUG on, every statement would also be formatted
    # and kept in the connection's query log (the .env of a development checkout turns it on).
    settings.DEBUG = False
    runner = get_runner(settings)(verbosity=0, interactive=False)
    old = runner.setup_databases()
    from dsar import sample_product

    sample_product.install()  # the product's tables: migrations never create them
    results: list[dict[str, object]] = []
    try:
        names = [m.name for m in pkgutil.iter_modules([str(HERE)]) if m.name.startswith("bench_")]
        for name in sorted(names):
            if argv and name.removeprefix("bench_") not in argv and name not in argv:
                continue
            module = importlib.import_module(f"benchmarks.{name}")
            _fresh(sample_product)  # each module starts from what migrations leave, as a test does
            for row in module.run():
                results.append(row)
                print(
                    f"{row['name']:<44} ours {row['ours']:>12}  baseline {row['baseline']:>12}  "
                    f"ratio {row['ratio']:>8.3g}  target {row['target']}  {'OK' if row['ok'] else 'MISS'}",
                    flush=True,
                )
    finally:
        runner.teardown_databases(old)
    (HERE / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return 0 if all(r["ok"] for r in results) else 1


def _fresh(sample_product: Any) -> None:
    """Empty every test database and put back what migrations install (staff roles, the
    working-day calendar, the shipped retention rules, the audit chain's head): one module's
    rows (consent events are protected from deletion) must not trip the next."""
    from django.apps import apps
    from django.core.management import call_command

    from accounts.roles import roles_install
    from core.audit import GENESIS_HASH
    from core.models import AuditChainHead
    from dsar.calendar_seed import seed_calendar
    from retention.defaults import rules_install

    for alias in ("default", "keystore"):
        call_command("flush", database=alias, interactive=False, verbosity=0)
    sample_product.truncate(fast=True)
    roles_install(apps)
    seed_calendar(apps)
    rules_install(apps)
    AuditChainHead.objects.get_or_create(pk=1, defaults={"seq": 0, "hash": GENESIS_HASH})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
