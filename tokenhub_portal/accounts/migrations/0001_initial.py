"""Team, Membership, Invitation (from `tokenhub_portal`) and ApiKey (from `proxy`) move
here. Only Django's state moves: the tables keep their names and their rows."""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

MOVED = [("tokenhub_portal", "team"), ("tokenhub_portal", "membership"), ("tokenhub_portal", "invitation"),
         ("proxy", "apikey")]


def move_content_types(apps, schema_editor, moves=MOVED, to="accounts"):
    """Admin history and permissions point at content types: carry them along."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    for app_label, model in moves:
        if not ContentType.objects.filter(app_label=to, model=model).exists():
            ContentType.objects.filter(app_label=app_label, model=model).update(app_label=to)


def restore_content_types(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for app_label, model in MOVED:
        ContentType.objects.filter(app_label="accounts", model=model).update(app_label=app_label)


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("tokenhub_portal", "0002_invitation"),
        ("proxy", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Team",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("name", models.CharField(max_length=100, unique=True)),
                        ("monthly_budget", models.DecimalField(blank=True, decimal_places=2, max_digits=14, null=True)),
                        ("prepaid", models.BooleanField(default=False)),
                        ("created", models.DateTimeField(auto_now_add=True)),
                    ],
                    options={"db_table": "tokenhub_portal_team", "ordering": ["name"]},
                ),
                migrations.CreateModel(
                    name="Membership",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("role", models.CharField(choices=[("owner", "Owner"), ("admin", "Admin"), ("member", "Member")], default="member", max_length=10)),
                        ("created", models.DateTimeField(auto_now_add=True)),
                        ("user", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="memberships", to=settings.AUTH_USER_MODEL)),
                        ("team", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="memberships", to="accounts.team")),
                    ],
                    options={
                        "db_table": "tokenhub_portal_membership",
                        "constraints": [models.UniqueConstraint(fields=("team", "user"), name="unique_membership")],
                    },
                ),
                migrations.CreateModel(
                    name="Invitation",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("email", models.EmailField(max_length=254)),
                        ("role", models.CharField(choices=[("owner", "Owner"), ("admin", "Admin"), ("member", "Member")], default="member", max_length=10)),
                        ("token", models.CharField(editable=False, max_length=64, unique=True)),
                        ("created", models.DateTimeField(auto_now_add=True)),
                        ("expires_at", models.DateTimeField()),
                        ("accepted_at", models.DateTimeField(blank=True, null=True)),
                        ("revoked_at", models.DateTimeField(blank=True, null=True)),
                        ("accepted_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL)),
                        ("invited_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL)),
                        ("team", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="invitations", to="accounts.team")),
                    ],
                    options={"db_table": "tokenhub_portal_invitation", "ordering": ["-created"]},
                ),
                migrations.CreateModel(
                    name="ApiKey",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("name", models.CharField(blank=True, max_length=100)),
                        ("key_hash", models.CharField(editable=False, max_length=64, unique=True)),
                        ("prefix", models.CharField(editable=False, max_length=16)),
                        ("created", models.DateTimeField(auto_now_add=True)),
                        ("last_used", models.DateTimeField(blank=True, null=True)),
                        ("revoked_at", models.DateTimeField(blank=True, null=True)),
                        ("expires_at", models.DateTimeField(blank=True, null=True)),
                        ("allowed_models", models.JSONField(blank=True, default=list)),
                        ("rpm_limit", models.PositiveIntegerField(blank=True, null=True)),
                        ("tpm_limit", models.PositiveIntegerField(blank=True, null=True)),
                        ("monthly_limit", models.DecimalField(blank=True, decimal_places=2, max_digits=14, null=True)),
                        ("created_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL)),
                        ("team", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="api_keys", to="accounts.team")),
                    ],
                    options={"db_table": "proxy_apikey", "ordering": ["-created"]},
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, restore_content_types),
    ]
