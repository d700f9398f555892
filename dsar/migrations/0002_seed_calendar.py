"""Seed the working-day calendar with every year the chinese-calendar package knows
(2004–2026 in version 1.11). Later years come from `import_workdays`."""

from __future__ import annotations

from django.db import migrations


def seed(apps, schema_editor):
    if schema_editor.connection.alias != "default":
        return
    from dsar.calendar_seed import seed_calendar

    seed_calendar(apps)


class Migration(migrations.Migration):
    dependencies = [("dsar", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
