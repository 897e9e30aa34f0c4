"""The gateway owns no models: ApiKey went to `accounts`, RequestRecord to `billing`
(state only; the tables stay)."""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("proxy", "0001_initial"),
        ("billing", "0005_requestrecord_moved_here"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="RequestRecord"), migrations.DeleteModel(name="ApiKey")],
            database_operations=[],
        ),
    ]
