"""Model.thinking (a flag) becomes Model.thinking_mode (none | enabled | adaptive): a model
that thinks either takes a budget or only adaptive thinking with an effort (Opus 4.7)."""
from django.db import migrations, models


def flag_to_mode(apps, schema_editor):
    """A row that thinks keeps thinking in the form the seed gives its model (the 4.6+
    models adaptive, the rest with a budget); Opus 4.7, which the flag had to leave off
    because it refuses budgets, gets adaptive. Rows an operator switched off stay off."""
    from billing.seed import seed_thinking_modes

    seed = seed_thinking_modes()
    Model = apps.get_model("billing", "Model")
    for model in Model.objects.all():
        mode = seed.get(model.public_id, "enabled")
        if model.thinking or (model.public_id == "claude-opus-4-7" and mode == "adaptive"):
            model.thinking_mode = mode if mode != "none" else "enabled"
        else:
            model.thinking_mode = "none"
        model.save(update_fields=["thinking_mode"])


def mode_to_flag(apps, schema_editor):
    Model = apps.get_model("billing", "Model")
    Model.objects.exclude(thinking_mode="none").update(thinking=True)
    Model.objects.filter(thinking_mode="none").update(thinking=False)


class Migration(migrations.Migration):
    dependencies = [("billing", "0006_requestrecord_api")]

    operations = [
        migrations.AddField(
            model_name="model",
            name="thinking_mode",
            field=models.CharField(
                choices=[("none", "No extended thinking"), ("enabled", "thinking.type enabled + budget_tokens"),
                         ("adaptive", "thinking.type adaptive + output_config.effort")],
                default="none", help_text="the form of extended thinking the model accepts upstream", max_length=10,
            ),
        ),
        migrations.RunPython(flag_to_mode, mode_to_flag),
        migrations.RemoveField(model_name="model", name="thinking"),
    ]
