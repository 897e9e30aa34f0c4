"""OpenAPI schema tweaks: one mount in the document (the same API is served at every
mount), the authentication schemes, and the error responses every operation can give."""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema


def primary_mount_only(endpoints, **kwargs):
    primary = settings.API_MOUNTS[0] + "/"
    return [e for e in endpoints if e[0].startswith(primary)]


class ManagementKeyScheme(OpenApiAuthenticationExtension):
    target_class = "tokenhub_portal.web.api.auth.ManagementKeyAuthentication"
    name = "managementKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "th-…",
                "description": "A management key (team scope) or an operator key (every team)."}


class StaffSessionScheme(OpenApiAuthenticationExtension):
    target_class = "tokenhub_portal.web.api.auth.StaffSessionAuthentication"
    name = "staffSession"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME,
                "description": "A staff user's portal session (writes need the CSRF token)."}


ERRORS = {
    "400": "Invalid input: `error.param` names the field.",
    "401": "No key, or an unknown, revoked, disabled or expired one.",
    "403": "Not a management key, or an operator-only endpoint.",
    "404": "No such object for this caller (another team's ids are 404 too).",
    "409": "A request with this Idempotency-Key is still being processed.",
    "422": "The Idempotency-Key was used for a different request.",
}


class ManagementSchema(AutoSchema):
    """Adds the OpenAI-shaped error responses to every operation."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        from .serializers import ErrorSerializer

        error = self._get_response_for_code(ErrorSerializer, "400")
        writes = self.method in ("POST", "PATCH", "PUT", "DELETE")
        for code, description in ERRORS.items():
            if code in ("409", "422") and not writes:
                continue
            if code not in responses:
                responses[code] = {**error, "description": description}
        return responses
