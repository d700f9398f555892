from __future__ import annotations

from django.db import migrations


def sync(apps, schema_editor):
    if schema_editor.connection.alias != "default":
        return
    from accounts.roles import roles_install

    roles_install(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("retention", "0001_erasure"),
        ("dsar", "0004_closed_index"),
        ("consent", "0003_policy_response"),
    ]
    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
