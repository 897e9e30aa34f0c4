from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """The bottom layer: teams, their members and their API keys."""

    name = "tokenhub_portal.accounts"
    label = "accounts"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (audit entries, the gateway change counter)
