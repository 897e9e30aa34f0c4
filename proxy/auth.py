"""API-key authentication for the gateway, cached per process.

A lookup costs one indexed query the first time a key is seen, then nothing for
KEY_CACHE_SECONDS. Changes (revocation, expiry, limits, a team's budget or suspension)
reach every gateway process at once through Redis, or within a second through the
change counter without it (proxy/changes.py); the TTL only bounds staleness if such a
message is ever missed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from tokenhub_portal.accounts.keys import KEY_PREFIX, hash_key
from tokenhub_portal.accounts.models import ApiKey

from . import db
from .errors import GatewayError

ALL_KEYS = "*"
_NEGATIVE_TTL = 5.0
STALE_IF_ERROR_SECONDS = 600.0  # how long a known key keeps working while the database is down
_MAX_CACHED = 50_000


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: int
    key_hash: str
    team_id: int | None  # None: an operator key (management, every team)
    team_name: str
    name: str
    prefix: str
    revoked: bool
    expires_at: datetime | None
    allowed_models: frozenset[str]
    rpm_limit: int | None
    tpm_limit: int | None
    monthly_limit: Decimal | None
    team_monthly_budget: Decimal | None = None
    team_prepaid: bool = False
    team_suspended: bool = False
    limit_reset: str | None = None  # the period of monthly_limit: daily/weekly/monthly (None = monthly)
    disabled: bool = False
    scope: str = ApiKey.Kind.INFERENCE  # management keys manage; they never call models

    @classmethod
    def from_model(cls, key: ApiKey) -> KeyInfo:
        team = key.team
        return cls(
            id=key.pk, key_hash=key.key_hash, team_id=key.team_id, team_name=team.name if team else "",
            name=key.name, prefix=key.prefix, revoked=key.revoked_at is not None,
            expires_at=key.expires_at, allowed_models=frozenset(key.allowed_models or ()),
            rpm_limit=key.rpm_limit, tpm_limit=key.tpm_limit, monthly_limit=key.monthly_limit,
            team_monthly_budget=team.monthly_budget if team else None, team_prepaid=bool(team and team.prepaid),
            team_suspended=bool(team and team.suspended),
            limit_reset=key.limit_reset, disabled=key.disabled, scope=key.kind,
        )

    @property
    def calls_models(self) -> bool:
        return self.scope == ApiKey.Kind.INFERENCE


def extract_key(headers) -> str:
    auth = headers.get("authorization") or ""
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return (headers.get("x-api-key") or "").strip()


def _unauthorized(message: str, code: str = "invalid_api_key") -> GatewayError:
    return GatewayError(401, message, type="invalid_request_error", code=code)


def management_key_refused() -> GatewayError:
    return GatewayError(
        403, "This is a management key: it manages keys, budgets and usage through the management API "
             "(/api/v1/keys, /api/v1/team, /api/v1/usage…) and cannot call models. Use an inference key.",
        type="permission_error", code="management_key_not_allowed",
    )


async def authenticate(keys: KeyCache, headers, *, management: bool = False) -> KeyInfo:
    """The calling key. Management keys are refused (403) unless `management`: the
    caller only reads (the calling key, the model table), it never calls a model."""
    raw = extract_key(headers)
    if not raw:
        raise _unauthorized(
            "You didn't provide an API key. Send it as 'Authorization: Bearer th-…' or 'x-api-key'.",
            code="missing_api_key",
        )
    if not raw.startswith(KEY_PREFIX):
        raise _unauthorized("Incorrect API key provided. TokenHub keys start with 'th-'.")
    info = await keys.lookup(hash_key(raw))
    if info is None:
        raise _unauthorized("Incorrect API key provided.")
    if info.revoked:
        raise _unauthorized("This API key has been revoked.", code="revoked_api_key")
    if info.disabled:
        raise _unauthorized("This API key is disabled.", code="disabled_api_key")
    if info.expires_at is not None and info.expires_at <= timezone.now():
        raise _unauthorized("This API key has expired.", code="expired_api_key")
    if info.team_suspended:
        raise GatewayError(403, f"The team '{info.team_name}' is suspended; its keys cannot be used. "
                                "Contact your TokenHub operator.", type="permission_error", code="team_suspended")
    if not (management or info.calls_models):
        raise management_key_refused()
    return info


def _load(key_hash: str) -> KeyInfo | None:
    key = ApiKey.objects.select_related("team").filter(key_hash=key_hash).first()
    return KeyInfo.from_model(key) if key else None


class KeyCache:
    """This process's keys by hash (one per Runtime), the unknown ones briefly too."""

    def __init__(self) -> None:
        # key hash → (fresh until, key, loaded at), in monotonic seconds
        self._cache: dict[str, tuple[float, KeyInfo | None, float]] = {}
        # Bumped by every invalidation: a lookup that read the database before a revocation
        # arrived must not cache what it read.
        self._generation = 0

    async def lookup(self, key_hash: str) -> KeyInfo | None:
        now = time.monotonic()
        hit = self._cache.get(key_hash)
        if hit is not None and hit[0] > now:
            return hit[1]
        generation = self._generation
        try:
            info = await db.run(_load, key_hash)
        except db.DatabaseUnavailable:
            # The database is down: a key this process knew a moment ago stays usable for a
            # while (nobody can revoke it meanwhile: a revocation is a database write), so
            # calls keep flowing and their records go to the spool.
            if hit is not None and hit[1] is not None and now - hit[2] < STALE_IF_ERROR_SECONDS:
                return hit[1]
            raise
        ttl = settings.KEY_CACHE_SECONDS if info else _NEGATIVE_TTL
        if ttl and generation == self._generation:  # no invalidation arrived while we read: cacheable
            if len(self._cache) >= _MAX_CACHED:  # random keys must not grow the cache without bound
                for expired in [h for h, (fresh_until, _, _) in self._cache.items() if fresh_until <= now]:
                    del self._cache[expired]
            self._cache[key_hash] = (now + ttl, info, now)
        return info

    def forget(self, key_hash: str | None = None) -> None:
        self._generation += 1
        if key_hash is None or key_hash == ALL_KEYS:
            # Expired rather than dropped: read again at next use, but still there to serve if
            # the database is down at that moment (a change to one key drops that key for good).
            for cached, (_, info, loaded) in list(self._cache.items()):
                self._cache[cached] = (0.0, info, loaded)
        else:
            self._cache.pop(key_hash, None)
