from django.apps import AppConfig


class BillingConfig(AppConfig):
    """The model/price table, the ledger, roll-ups, statements and budget alerts."""

    name = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (audit entries, the gateway change counter)
