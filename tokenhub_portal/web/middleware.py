"""Request-wide context for the audit log: who is acting and from where."""
from __future__ import annotations

from django.conf import settings

from tokenhub_portal.accounts.audit import audit_context
from tokenhub_portal.accounts.models import AuditEntry


def request_source(path: str) -> str:
    if path.startswith("/admin/"):
        return AuditEntry.Source.ADMIN
    if any(path.startswith(mount + "/") or path == mount for mount in settings.API_MOUNTS):
        return AuditEntry.Source.API
    return AuditEntry.Source.PORTAL


class AuditContextMiddleware:
    """Every audited change made while serving a request is attributed to the request's
    user (read when the entry is written, so after authentication — DRF's too), its client
    address and the part of the site it came through: portal, admin or api. A view that
    acts for an API key sets `request.audit_label` (e.g. the key's prefix)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with audit_context(request_source(request.path), request=request,
                           ip=request.META.get("REMOTE_ADDR") or None):
            return self.get_response(request)
