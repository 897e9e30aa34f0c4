"""The management API's routes under each of settings.API_MOUNTS (the paths listed in
.routes are the ones tokenhub_portal.asgi sends here), the OpenAPI schema and the docs."""
from __future__ import annotations

from django.conf import settings
from django.urls import path, re_path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView

from . import views

KEY_HASH = r"(?P<key_hash>[^/]+)"
TEAM_ID = r"(?P<team_id>[0-9]{1,18})"
MONTH = r"(?P<month>[^/]+)"


def _mount(mount: str) -> list:
    root = mount.strip("/") + "/"
    return [
        path(root + "keys", views.KeysView.as_view()),
        re_path(rf"^{root}keys/{KEY_HASH}$", views.KeyDetailView.as_view()),
        path(root + "team", views.TeamView.as_view()),
        path(root + "teams", views.TeamsView.as_view()),
        re_path(rf"^{root}teams/{TEAM_ID}$", views.TeamDetailView.as_view()),
        re_path(rf"^{root}teams/{TEAM_ID}/credits$", views.TeamCreditsView.as_view()),
        path(root + "requests", views.RequestsView.as_view()),
        path(root + "usage", views.UsageView.as_view()),
        re_path(rf"^{root}statements/{MONTH}$", views.StatementView.as_view()),
        path(root + "openapi.json", SpectacularJSONAPIView.as_view(), name="openapi" if mount == settings.API_MOUNTS[0]
             else None),
    ]


urlpatterns = [
    *(route for mount in settings.API_MOUNTS for route in _mount(mount)),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="openapi"), name="api-docs"),
]
