from __future__ import annotations

from django.db import migrations


def create_roles(apps, schema_editor):
    # Data migrations run on every database alias; roles live in the default one only.
    if schema_editor.connection.alias != "default":
        return
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    from accounts.roles import roles_sync

    # Permissions are normally created after migrate; make them now so groups can hold them.
    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, apps=apps, verbosity=0, using="default")
    roles_sync(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("core", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
