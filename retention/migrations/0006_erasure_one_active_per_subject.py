from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_staff_roles"),
        ("retention", "0005_service_termination"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="erasure",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status__in", ["confirmed", "running"])),
                fields=("subject",),
                name="erasure_one_active_per_subject",
            ),
        ),
    ]
