from django.db import migrations


def seed(apps, schema_editor):
    from billing.seed import load_seed

    load_seed(apps.get_model("billing", "Model"), apps.get_model("billing", "Price"))


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
