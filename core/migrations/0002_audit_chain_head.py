from __future__ import annotations

from django.db import migrations

GENESIS_HASH = "0" * 64


def create_head(apps, schema_editor):
    if schema_editor.connection.alias != "default":
        return
    apps.get_model("core", "AuditChainHead").objects.get_or_create(
        pk=1, defaults={"seq": 0, "hash": GENESIS_HASH}
    )


class Migration(migrations.Migration):
    dependencies = [("core", "0001_initial")]
    operations = [migrations.RunPython(create_head, migrations.RunPython.noop)]
