from __future__ import annotations

from django.db import migrations


def sync_roles(apps, schema_editor):
    if schema_editor.connection.alias != "default":
        return
    from accounts.roles import roles_install

    roles_install(apps)


class Migration(migrations.Migration):
    # After every app's latest roles migration, so the groups end up holding all their permissions.
    dependencies = [
        ("core", "0004_recipients"),
        ("accounts", "0002_staff_roles"),
        ("consent", "0003_policy_response"),
        ("dsar", "0004_closed_index"),
    ]
    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
