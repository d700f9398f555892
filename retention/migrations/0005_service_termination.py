import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def roles(apps, schema_editor):
    if schema_editor.connection.alias != "default":
        return
    from accounts.roles import roles_install

    roles_install(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("retention", "0004_retention_rules"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="erasure",
            name="origin",
            field=models.CharField(
                choices=[
                    ("request", "deletion request"),
                    ("cancellation", "account cancellation"),
                    ("retention", "retention period ended"),
                    ("command", "staff command"),
                    ("termination", "service termination"),
                ],
                max_length=14,
                verbose_name="origin",
            ),
        ),
        migrations.CreateModel(
            name="ServiceTermination",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("announced", "announced: notices being sent"),
                            ("notified", "notified: waiting for the stop date"),
                            ("erasing", "erasing"),
                            ("done", "done"),
                            ("cancelled", "cancelled"),
                        ],
                        default="announced",
                        max_length=10,
                        verbose_name="status",
                    ),
                ),
                ("active", models.BooleanField(default=True, editable=False)),
                (
                    "stop_on",
                    models.DateField(
                        help_text="erasure starts on this day", verbose_name="the service stops on"
                    ),
                ),
                ("notice_days", models.PositiveIntegerField(verbose_name="notice period (days)")),
                (
                    "reason",
                    models.TextField(
                        help_text="public: shown in the announcement and the e-mail", verbose_name="reason"
                    ),
                ),
                ("started_at", models.DateTimeField(auto_now_add=True, verbose_name="started at")),
                ("notified_at", models.DateTimeField(blank=True, null=True, verbose_name="notices sent at")),
                (
                    "erasing_at",
                    models.DateTimeField(blank=True, null=True, verbose_name="erasure started at"),
                ),
                ("finished_at", models.DateTimeField(blank=True, null=True, verbose_name="finished at")),
                ("cancelled_at", models.DateTimeField(blank=True, null=True, verbose_name="cancelled at")),
                ("subjects_after", models.BigIntegerField(default=0, editable=False)),
                ("lease_until", models.DateTimeField(blank=True, editable=False, null=True)),
                ("subjects_erased", models.PositiveIntegerField(default=0, verbose_name="people erased")),
                (
                    "subjects_held",
                    models.PositiveIntegerField(default=0, verbose_name="people kept under a legal hold"),
                ),
                (
                    "subjects_remaining",
                    models.PositiveIntegerField(default=0, verbose_name="people remaining"),
                ),
                ("report", models.JSONField(blank=True, default=dict, verbose_name="final report")),
                (
                    "cancelled_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "started_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "service termination",
                "verbose_name_plural": "service terminations",
                "ordering": ["-started_at", "-id"],
                "permissions": [("start_termination", "Can start or cancel the termination of the service")],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("active", True)),
                        fields=("active",),
                        name="termination_one_active",
                    )
                ],
            },
        ),
        # The DPO starts (and may cancel) the termination; everyone on staff reads it.
        migrations.RunPython(roles, migrations.RunPython.noop),
    ]
