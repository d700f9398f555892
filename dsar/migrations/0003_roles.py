from __future__ import annotations

from django.db import migrations


def sync(apps, schema_editor):
    if schema_editor.connection.alias != "default":
        return
    from accounts.roles import roles_install

    roles_install(apps)


class Migration(migrations.Migration):
    dependencies = [("dsar", "0002_seed_calendar"), ("accounts", "0002_staff_roles")]
    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
