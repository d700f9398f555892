from __future__ import annotations

from django.db import migrations


def sync(apps, schema_editor):
    if schema_editor.connection.alias != "default":
        return
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    from accounts.roles import roles_sync

    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, apps=apps, verbosity=0, using="default")
    roles_sync(apps)


class Migration(migrations.Migration):
    dependencies = [("dsar", "0002_seed_calendar"), ("accounts", "0002_staff_roles")]
    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
