"""Edits made anywhere (admin, portal, management commands) reach every gateway process:
the change is published on Redis and each process's listener drops what it cached.
Without Redis there is only one process to tell, and the TTLs cover management commands."""
from __future__ import annotations

import asyncio
import logging

import redis
import redis.asyncio as aioredis
from django.conf import settings

from .auth import ALL_KEYS, KeyCache
from .catalog import CatalogCache

log = logging.getLogger(__name__)

KEY_CHANNEL = "tokenhub:keys"
CATALOG = "catalog"  # the model/price table changed


def publish(message: str) -> None:
    """A key hash, ALL_KEYS (a team's budget changed: every key carries it) or CATALOG.
    Sync: called from admin, portal and commands."""
    if settings.REDIS_URL:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
        try:
            client.publish(KEY_CHANNEL, message)
        finally:
            client.close()


async def listen(keys: KeyCache, catalog: CatalogCache) -> None:
    """Apply every published change to this process's caches (a Runtime task, with Redis)."""
    while True:
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(KEY_CHANNEL)
                keys.forget()  # anything cached before we listened may be stale
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        changed = message["data"].decode()
                        if changed == CATALOG:
                            catalog.invalidate()
                        else:
                            keys.forget(None if changed == ALL_KEYS else changed)
        except asyncio.CancelledError:
            raise
        except Exception:  # Redis went away: drop the cache, retry shortly
            log.warning("key invalidation channel lost; retrying", exc_info=True)
            keys.forget()
            await asyncio.sleep(1)
        finally:
            await client.aclose()
