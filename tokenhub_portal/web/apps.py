from django.apps import AppConfig


class WebConfig(AppConfig):
    """The top layer: the portal, URLs, management commands and the ASGI entry."""

    name = "tokenhub_portal.web"
    label = "web"
