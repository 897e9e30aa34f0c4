from django.apps import AppConfig


class WebConfig(AppConfig):
    """The top layer: the portal, the management API, URLs, management commands and the ASGI entry."""

    name = "tokenhub_portal.web"
    label = "web"

    def ready(self) -> None:
        from .api import schema  # noqa: F401  (registers the API's OpenAPI extensions)
