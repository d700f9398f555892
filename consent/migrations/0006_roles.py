from __future__ import annotations

from django.db import migrations


def sync(apps, schema_editor):
    if schema_editor.connection.alias != "default":
        return
    from accounts.roles import roles_install

    roles_install(apps)


class Migration(migrations.Migration):
    # The groups get the permissions of notice campaigns and security incidents; after every
    # app's latest roles migration, so they end up holding all their permissions.
    dependencies = [
        ("consent", "0005_campaigns"),
        ("core", "0005_recipient_roles"),
        ("dsar", "0005_correction_item"),
        ("retention", "0002_roles"),
    ]
    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
