"""Who calls the management API: a management key (`Authorization: Bearer th-…` or
`x-api-key`, looked up by hash like the gateway does) or a staff user's browser session.

Both become an `Actor`: the team it may act on (None for operators: operator keys and
staff), and the user its writes are attributed to."""
from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone
from rest_framework import authentication, exceptions

from tokenhub_portal.accounts.keys import KEY_PREFIX, hash_key
from tokenhub_portal.accounts.models import ApiKey, Team

from .errors import ApiError


@dataclass
class Actor:
    user: object | None          # the session user, or the key's creator (for attribution)
    api_key: ApiKey | None
    team: Team | None            # the one team a team-scoped actor acts on
    operator: bool = False       # operator keys and staff sessions act on every team
    manages: bool = True         # False: an inference key or a non-staff session (refused)
    is_authenticated: bool = True

    @property
    def idempotency_scope(self) -> str:
        """Whose requests share an Idempotency-Key space."""
        return f"key:{self.api_key.pk}" if self.api_key is not None else f"user:{self.user.pk}"

    @property
    def pk(self):  # DRF's throttling and logging read request.user.pk
        return self.idempotency_scope


def _unauthorized(message: str, code: str) -> ApiError:
    return ApiError(401, message, code=code)


class ManagementKeyAuthentication(authentication.BaseAuthentication):
    """A `th-` key. Unknown, revoked, disabled or expired keys get 401; an inference key
    authenticates but the permission check refuses it (403)."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            raw = header[7:].strip()
        else:
            raw = request.headers.get("x-api-key", "").strip()
        if not raw:
            return None
        if not raw.startswith(KEY_PREFIX):
            raise _unauthorized("Incorrect API key provided. TokenHub keys start with 'th-'.", "invalid_api_key")
        key = ApiKey.objects.select_related("team", "created_by").filter(key_hash=hash_key(raw)).first()
        if key is None:
            raise _unauthorized("Incorrect API key provided.", "invalid_api_key")
        if key.revoked_at is not None:
            raise _unauthorized("This API key has been revoked.", "revoked_api_key")
        if key.disabled:
            raise _unauthorized("This API key is disabled.", "disabled_api_key")
        if key.expires_at is not None and key.expires_at <= timezone.now():
            raise _unauthorized("This API key has expired.", "expired_api_key")
        actor = Actor(user=key.created_by, api_key=key, team=key.team, operator=key.is_operator,
                      manages=key.is_management)
        return actor, key

    def authenticate_header(self, request):
        return 'Bearer realm="tokenhub"'  # makes DRF answer 401 (not 403) without credentials


class StaffSessionAuthentication(authentication.SessionAuthentication):
    """A browser session (the portal's login, CSRF-checked on writes): staff act as
    operators; other users are refused, they use the portal or a management key."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        user = result[0]
        return Actor(user=user, api_key=None, team=None, operator=user.is_staff, manages=user.is_staff), None

    def enforce_csrf(self, request):
        try:
            super().enforce_csrf(request)
        except exceptions.PermissionDenied as exc:
            raise ApiError(403, str(exc.detail), code="csrf_failed") from None
