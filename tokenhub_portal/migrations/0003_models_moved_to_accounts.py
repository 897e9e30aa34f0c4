"""Team, Membership and Invitation now live in `accounts` (state only; the tables stay)."""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("tokenhub_portal", "0002_invitation"),
        ("proxy", "0002_models_moved_out"),
        ("billing", "0005_requestrecord_moved_here"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="Invitation"),
                migrations.DeleteModel(name="Membership"),
                migrations.DeleteModel(name="Team"),
            ],
            database_operations=[],
        ),
    ]
