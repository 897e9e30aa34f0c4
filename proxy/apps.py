from django.apps import AppConfig


class ProxyConfig(AppConfig):
    name = "proxy"

    def ready(self) -> None:
        from . import signals  # noqa: F401
