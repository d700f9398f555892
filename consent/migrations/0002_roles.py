from __future__ import annotations

from django.db import migrations


def sync(apps, schema_editor):
    if schema_editor.connection.alias != "default":
        return
    from accounts.roles import roles_install

    roles_install(apps)


class Migration(migrations.Migration):
    dependencies = [("consent", "0001_initial"), ("dsar", "0003_roles")]
    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
