"""The database cache table (the embedded default cache, which allauth's rate limits use), so
that `migrate` alone leaves a working site. A no-op for Redis or any other cache."""

from __future__ import annotations

from django.db import migrations


def create_cache_table(apps, schema_editor):
    if schema_editor.connection.alias != "default":
        return
    from django.core.management import call_command

    call_command("createcachetable", database="default", verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("core", "0002_audit_chain_head")]
    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
