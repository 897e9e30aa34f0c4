"""Sign-in throttling helpers (django-axes is configured in settings)."""
from __future__ import annotations

from django.conf import settings


def client_ip(request) -> str | None:
    """The address failed sign-ins are counted against. Behind TRUSTED_PROXY_COUNT proxies
    that each append to X-Forwarded-For, it is the N-th entry from the right: entries
    further left come from the client and could be forged to dodge the per-address limit."""
    count = settings.TRUSTED_PROXY_COUNT
    if count:
        forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
        if len(forwarded) >= count:
            return forwarded[-count]
    return request.META.get("REMOTE_ADDR")
