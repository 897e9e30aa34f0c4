"""API-key authentication for the gateway, cached per process.

A lookup costs one indexed query the first time a key is seen, then nothing for
KEY_CACHE_SECONDS. Revocations are published on Redis and every gateway process drops
the key at once; the TTL only bounds staleness if such a message is ever missed.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from tokenhub_portal.accounts.keys import KEY_PREFIX, hash_key
from tokenhub_portal.accounts.models import ApiKey

from .errors import GatewayError

log = logging.getLogger(__name__)

KEY_CHANNEL = "tokenhub:keys"
_NEGATIVE_TTL = 5.0


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: int
    key_hash: str
    team_id: int
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

    @classmethod
    def from_model(cls, key: ApiKey) -> KeyInfo:
        return cls(
            id=key.pk, key_hash=key.key_hash, team_id=key.team_id, team_name=key.team.name,
            name=key.name, prefix=key.prefix, revoked=key.revoked_at is not None,
            expires_at=key.expires_at, allowed_models=frozenset(key.allowed_models or ()),
            rpm_limit=key.rpm_limit, tpm_limit=key.tpm_limit, monthly_limit=key.monthly_limit,
            team_monthly_budget=key.team.monthly_budget, team_prepaid=key.team.prepaid,
        )


_cache: dict[str, tuple[float, KeyInfo | None]] = {}
# Bumped by every invalidation: a lookup that read the database before a revocation
# arrived must not cache what it read.
_generation = 0
_listener: asyncio.Task | None = None


def extract_key(headers) -> str:
    auth = headers.get("authorization") or ""
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return (headers.get("x-api-key") or "").strip()


def _unauthorized(message: str, code: str = "invalid_api_key") -> GatewayError:
    return GatewayError(401, message, type="invalid_request_error", code=code)


async def authenticate(headers) -> KeyInfo:
    raw = extract_key(headers)
    if not raw:
        raise _unauthorized(
            "You didn't provide an API key. Send it as 'Authorization: Bearer th-…' or 'x-api-key'.",
            code="missing_api_key",
        )
    if not raw.startswith(KEY_PREFIX):
        raise _unauthorized("Incorrect API key provided. TokenHub keys start with 'th-'.")
    info = await lookup(hash_key(raw))
    if info is None:
        raise _unauthorized("Incorrect API key provided.")
    if info.revoked:
        raise _unauthorized("This API key has been revoked.", code="revoked_api_key")
    if info.expires_at is not None and info.expires_at <= timezone.now():
        raise _unauthorized("This API key has expired.", code="expired_api_key")
    return info


async def lookup(key_hash: str) -> KeyInfo | None:
    now = time.monotonic()
    hit = _cache.get(key_hash)
    if hit is not None and hit[0] > now:
        return hit[1]
    generation = _generation
    key = await ApiKey.objects.select_related("team").filter(key_hash=key_hash).afirst()
    info = KeyInfo.from_model(key) if key else None
    ttl = settings.KEY_CACHE_SECONDS if info else _NEGATIVE_TTL
    if ttl and generation == _generation:  # no invalidation arrived while we read: cacheable
        _cache[key_hash] = (now + ttl, info)
    return info


def forget(key_hash: str | None = None) -> None:
    global _generation
    _generation += 1
    if key_hash is None or key_hash == ALL_KEYS:
        _cache.clear()
    else:
        _cache.pop(key_hash, None)


ALL_KEYS = "*"
CATALOG = "catalog"  # the model/price table changed


def broadcast_key_change(key_hash: str = ALL_KEYS) -> None:
    """Tell every gateway process to drop a key (or, with "*", every key: a team's
    budget changed) from its cache. Sync: called from admin, portal and commands."""
    forget(key_hash)
    _publish(key_hash)


def broadcast_catalog_change() -> None:
    """Every gateway process reloads the model/price table (a new price takes effect at
    once, so the cost in responses and limits matches the charge)."""
    from .catalog import invalidate_catalog

    invalidate_catalog()
    _publish(CATALOG)


def _publish(message: str) -> None:
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
        try:
            client.publish(KEY_CHANNEL, message)
        finally:
            client.close()


def start_listener() -> None:
    """Subscribe to revocations (called once per process at ASGI start-up). Without
    Redis there is only one process to tell, and the TTL covers management commands."""
    global _listener
    if settings.REDIS_URL and (_listener is None or _listener.done()):
        _listener = asyncio.get_running_loop().create_task(_listen())


async def stop_listener() -> None:
    global _listener
    if _listener is not None:
        _listener.cancel()
        try:
            await _listener
        except (asyncio.CancelledError, Exception):
            pass
        _listener = None


async def _listen() -> None:
    import redis.asyncio as aioredis

    while True:
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(KEY_CHANNEL)
                forget()  # anything cached before we listened may be stale
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        changed = message["data"].decode()
                        if changed == CATALOG:
                            from .catalog import invalidate_catalog

                            invalidate_catalog()
                        else:
                            forget(None if changed == ALL_KEYS else changed)
        except asyncio.CancelledError:
            raise
        except Exception:  # Redis went away: drop the cache, retry shortly
            log.warning("key invalidation channel lost; retrying", exc_info=True)
            forget()
            await asyncio.sleep(1)
        finally:
            await client.aclose()
