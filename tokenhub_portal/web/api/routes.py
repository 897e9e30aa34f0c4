"""Which paths under the API mounts belong to the management API (Django REST framework).

tokenhub_portal.asgi asks this before the lean router, on every API request, so it stays
a set lookup and a prefix test and imports nothing of DRF. `GET /api/v1/key` (the calling
key, singular) is not here: it stays on the lean router with the model endpoints."""
from __future__ import annotations

from django.conf import settings

# Exact paths, and path prefixes (with their trailing slash) that take an id.
EXACT = ("/keys", "/team", "/teams", "/requests", "/usage", "/openapi.json")
PREFIXES = ("/keys/", "/teams/", "/statements/")

_exact = frozenset(mount + path for mount in settings.API_MOUNTS for path in EXACT)
_prefixes = tuple(mount + path for mount in settings.API_MOUNTS for path in PREFIXES)


def is_management_path(path: str) -> bool:
    return path in _exact or path.startswith(_prefixes)
