import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def defaults(apps, schema_editor):
    if schema_editor.connection.alias != "default":
        return
    from retention.defaults import rules_install

    rules_install(apps)


def roles(apps, schema_editor):
    if schema_editor.connection.alias != "default":
        return
    from accounts.roles import roles_install

    roles_install(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_staff_roles"),
        ("retention", "0003_backup"),
        # After every app's latest models, so that the roles sync below sees all permissions.
        ("core", "0005_recipient_roles"),
        ("dsar", "0007_data_export"),
        ("consent", "0006_roles"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="SweepRun",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("started_at", models.DateTimeField(verbose_name="started at")),
                ("finished_at", models.DateTimeField(blank=True, null=True, verbose_name="finished at")),
                ("dry_run", models.BooleanField(default=False, verbose_name="dry run")),
                (
                    "status",
                    models.CharField(
                        choices=[("running", "running"), ("done", "done"), ("failed", "failed")],
                        default="running",
                        max_length=8,
                        verbose_name="status",
                    ),
                ),
                ("counts", models.JSONField(blank=True, default=dict, verbose_name="counts")),
                ("error", models.CharField(blank=True, max_length=200, verbose_name="error")),
            ],
            options={
                "verbose_name": "retention sweep",
                "verbose_name_plural": "retention sweeps",
                "ordering": ["-started_at", "-pk"],
            },
        ),
        migrations.AddField(
            model_name="legalhold",
            name="review_alerted_on",
            field=models.DateField(blank=True, editable=False, null=True),
        ),
        migrations.CreateModel(
            name="RetentionRule",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "category",
                    models.CharField(
                        choices=[
                            ("account_registration", "Account registration"),
                            ("contact", "Contact details"),
                            ("interaction_records", "Interaction records"),
                            ("identity_documents", "Identity documents"),
                            ("birth_gender_native_place", "Birth date, gender and native place"),
                            ("device_information", "Device information"),
                            ("unique_device_identifiers", "Unique device identifiers"),
                            ("location", "Location"),
                            ("health", "Health information"),
                            ("orders_delivery", "Orders and delivery"),
                            ("payment_status", "Payment status"),
                            ("communications", "Communications"),
                            ("usage_statistics", "Usage statistics"),
                        ],
                        max_length=40,
                        verbose_name="category",
                    ),
                ),
                (
                    "scope",
                    models.CharField(
                        choices=[
                            ("product", "the product's databases (data map)"),
                            ("requests", "Quanyi: data-subject requests"),
                            ("verification_documents", "Quanyi: identity documents of requests"),
                            ("consent_events", "Quanyi: consent ledger"),
                            ("audit_entries", "Quanyi: audit log"),
                        ],
                        default="product",
                        max_length=24,
                        verbose_name="applies to",
                    ),
                ),
                (
                    "period_days",
                    models.PositiveIntegerField(
                        validators=[
                            django.core.validators.MinValueValidator(1),
                            django.core.validators.MaxValueValidator(36525),
                        ],
                        verbose_name="period (days)",
                    ),
                ),
                (
                    "trigger",
                    models.CharField(
                        choices=[
                            ("collection", "collection"),
                            ("last_activity", "last activity"),
                            ("account_cancellation", "account cancellation (the person is erased)"),
                            ("request_closed", "request closed"),
                        ],
                        max_length=24,
                        verbose_name="counted from",
                    ),
                ),
                (
                    "action",
                    models.CharField(
                        choices=[
                            ("delete", "delete"),
                            ("anonymise", "anonymise (per the data map)"),
                            ("restrict", "restrict (kept by law: storage and security only)"),
                        ],
                        max_length=12,
                        verbose_name="at the end",
                    ),
                ),
                (
                    "legal_basis",
                    models.TextField(
                        help_text="why this period: the law or the purpose", verbose_name="legal basis"
                    ),
                ),
                ("active", models.BooleanField(default=True, verbose_name="active")),
                ("updated_at", models.DateTimeField(blank=True, null=True, verbose_name="updated at")),
                (
                    "updated_by",
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
                "verbose_name": "retention rule",
                "verbose_name_plural": "retention rules",
                "ordering": ["scope", "category"],
            },
        ),
        migrations.CreateModel(
            name="SweepCursor",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("source", models.CharField(max_length=40)),
                ("table", models.CharField(max_length=63)),
                ("lease_until", models.DateTimeField(blank=True, null=True)),
                ("position", models.JSONField(blank=True, null=True)),
                ("pass_started_at", models.DateTimeField(blank=True, null=True)),
                ("pass_rows", models.PositiveBigIntegerField(default=0)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "rule",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="cursors",
                        to="retention.retentionrule",
                    ),
                ),
                (
                    "run",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="retention.sweeprun",
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="ChildDataFinding",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("found_at", models.DateTimeField(verbose_name="found at")),
                ("resolved_at", models.DateTimeField(blank=True, null=True, verbose_name="resolved at")),
                (
                    "resolution",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("guardian_consent", "guardian consent recorded"),
                            ("turned_14", "no longer under 14"),
                            ("erased", "the person's data was erased"),
                            ("staff", "closed by staff"),
                        ],
                        max_length=16,
                        verbose_name="resolution",
                    ),
                ),
                (
                    "resolved_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "subject",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="child_findings",
                        to="accounts.datasubject",
                    ),
                ),
            ],
            options={
                "verbose_name": "child's data without guardian consent",
                "verbose_name_plural": "children's data without guardian consent",
                "ordering": ["resolved_at", "found_at"],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("resolved_at__isnull", True)),
                        fields=("subject",),
                        name="child_finding_open_once",
                    )
                ],
            },
        ),
        migrations.AddConstraint(
            model_name="retentionrule",
            constraint=models.UniqueConstraint(
                fields=("category", "scope"),
                name="retention_rule_once",
                violation_error_message="There is a rule for this category here already: change that one.",
            ),
        ),
        migrations.AddConstraint(
            model_name="sweepcursor",
            constraint=models.UniqueConstraint(fields=("rule", "source", "table"), name="sweep_cursor_once"),
        ),
        # The shipped rules (retention/defaults.py, README "Retention"); the DPO edits them later.
        migrations.RunPython(defaults, migrations.RunPython.noop),
        # The DPO edits rules; agents and auditors read rules, sweep reports and children findings.
        migrations.RunPython(roles, migrations.RunPython.noop),
    ]
