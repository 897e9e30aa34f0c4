"""RequestRecord moves here from `proxy`, and every foreign key to a moved model follows
it to its new app. State only: no table, column or constraint changes."""
import django.db.models.deletion
from django.db import migrations, models


def move_content_type(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="billing", model="requestrecord").exists():
        ContentType.objects.filter(app_label="proxy", model="requestrecord").update(app_label="billing")


def restore_content_type(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="billing", model="requestrecord").update(app_label="proxy")


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0004_rollups_statements"),
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="RequestRecord",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("generation_id", models.CharField(max_length=64, unique=True)),
                        ("end_user", models.CharField(blank=True, max_length=256)),
                        ("requested_model", models.CharField(max_length=100)),
                        ("upstream_model", models.CharField(blank=True, max_length=100)),
                        ("status", models.CharField(choices=[("success", "Success"), ("error", "Error"), ("cancelled", "Cancelled by client")], max_length=10)),
                        ("http_status", models.PositiveSmallIntegerField()),
                        ("error_type", models.CharField(blank=True, max_length=64)),
                        ("error_message", models.TextField(blank=True)),
                        ("streamed", models.BooleanField(default=False)),
                        ("input_tokens", models.PositiveIntegerField(default=0)),
                        ("cache_write_5m_tokens", models.PositiveIntegerField(default=0)),
                        ("cache_write_1h_tokens", models.PositiveIntegerField(default=0)),
                        ("cache_read_tokens", models.PositiveIntegerField(default=0)),
                        ("output_tokens", models.PositiveIntegerField(default=0)),
                        ("output_estimated", models.BooleanField(default=False)),
                        ("finish_reason", models.CharField(blank=True, max_length=20)),
                        ("latency_ms", models.PositiveIntegerField(blank=True, null=True)),
                        ("ttft_ms", models.PositiveIntegerField(blank=True, null=True)),
                        ("upstream_request_id", models.CharField(blank=True, max_length=100)),
                        ("prompt", models.JSONField(blank=True, null=True)),
                        ("completion", models.TextField(blank=True)),
                        ("created", models.DateTimeField(db_index=True)),
                        ("priced_at", models.DateTimeField(blank=True, null=True)),
                        ("api_key", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="requests", to="accounts.apikey")),
                        ("model", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="billing.model")),
                        ("team", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="requests", to="accounts.team")),
                    ],
                    options={
                        "db_table": "proxy_requestrecord",
                        "ordering": ["-created"],
                        "indexes": [
                            models.Index(fields=["team", "-created"], name="req_team_created"),
                            models.Index(fields=["api_key", "-created"], name="req_key_created"),
                            models.Index(condition=models.Q(("priced_at__isnull", True)), fields=["created"], name="req_unpriced"),
                        ],
                    },
                ),
                migrations.AlterField(
                    model_name="charge", name="request",
                    field=models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name="charge", to="billing.requestrecord"),
                ),
                migrations.AlterField(
                    model_name="charge", name="team",
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="charges", to="accounts.team"),
                ),
                migrations.AlterField(
                    model_name="charge", name="api_key",
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="charges", to="accounts.apikey"),
                ),
                migrations.AlterField(
                    model_name="creditentry", name="team",
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="credit_entries", to="accounts.team"),
                ),
                migrations.AlterField(
                    model_name="usagerollup", name="team",
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to="accounts.team"),
                ),
                migrations.AlterField(
                    model_name="usagerollup", name="api_key",
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to="accounts.apikey"),
                ),
                migrations.AlterField(
                    model_name="monthlystatement", name="team",
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="statements", to="accounts.team"),
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_type, restore_content_type),
    ]
