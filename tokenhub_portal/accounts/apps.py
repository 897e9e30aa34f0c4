from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """The bottom layer: teams, their members and their API keys."""

    name = "tokenhub_portal.accounts"
    label = "accounts"
