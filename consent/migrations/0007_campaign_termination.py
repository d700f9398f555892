import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0006_roles"),
        ("retention", "0005_service_termination"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="noticecampaign",
            name="consent_campaign_about_one_thing",
        ),
        migrations.AddField(
            model_name="noticecampaign",
            name="termination",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="campaigns",
                to="retention.servicetermination",
                verbose_name="service termination",
            ),
        ),
        migrations.AlterField(
            model_name="noticecampaign",
            name="kind",
            field=models.CharField(
                choices=[
                    ("policy_change", "material privacy policy change"),
                    ("security_incident", "security incident"),
                    ("service_termination", "service termination"),
                ],
                max_length=20,
                verbose_name="kind",
            ),
        ),
        migrations.AddConstraint(
            model_name="noticecampaign",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("incident__isnull", True),
                        ("kind", "policy_change"),
                        ("policy__isnull", False),
                        ("termination__isnull", True),
                    ),
                    models.Q(
                        ("incident__isnull", False),
                        ("kind", "security_incident"),
                        ("policy__isnull", True),
                        ("termination__isnull", True),
                    ),
                    models.Q(
                        ("incident__isnull", True),
                        ("kind", "service_termination"),
                        ("policy__isnull", True),
                        ("termination__isnull", False),
                    ),
                    _connector="OR",
                ),
                name="consent_campaign_about_one_thing",
            ),
        ),
        migrations.AddConstraint(
            model_name="noticecampaign",
            constraint=models.UniqueConstraint(
                condition=models.Q(("termination__isnull", False)),
                fields=("termination",),
                name="consent_campaign_one_per_termination",
            ),
        ),
    ]
