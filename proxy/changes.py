"""Edits made anywhere (admin, portal, management commands) reach every gateway process.

With Redis the change is published and each process's listener drops what it cached, at
once. Without Redis (`make run`: one gateway process, but the admin, commands and other
processes write to the same database) each process reads the change counter
(tokenhub_portal.accounts.changes) every CHANGE_POLL_MS — one single-row query, not one
per request — and when it moved drops its keys, its catalog and its in-process limit
counters, so a revocation, suspension, limit edit or top-up applies within about a
second."""
from __future__ import annotations

import asyncio
import logging

import redis
import redis.asyncio as aioredis
from django.conf import settings

from tokenhub_portal.accounts import changes as change_counter

from . import db
from .auth import ALL_KEYS, KeyCache
from .catalog import CatalogCache
from .limits import LimitStore

log = logging.getLogger(__name__)

CATALOG = "catalog"  # the model/price table changed


def key_channel() -> str:
    """The channel of this deployment. Unlike keys, pub/sub channels are shared by every
    database of a Redis server: two deployments on one server (staging on /1, production
    on /0) must not drop each other's caches, so the database number is in the name."""
    return f"tokenhub:{redis.connection.parse_url(settings.REDIS_URL).get('db', 0)}:keys"


def publish(message: str) -> None:
    """A key hash, ALL_KEYS (a team's budget changed: every key carries it) or CATALOG.
    Sync: called from admin, portal and commands."""
    if settings.REDIS_URL:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
        try:
            client.publish(key_channel(), message)
        finally:
            client.close()


async def listen(keys: KeyCache, catalog: CatalogCache) -> None:
    """Apply every published change to this process's caches (a Runtime task, with Redis)."""
    while True:
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(key_channel())
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


async def poll(keys: KeyCache, catalog: CatalogCache, limits: LimitStore) -> None:
    """Without Redis: follow the change counter (a Runtime task)."""
    seen = None
    while True:
        try:
            version = await db.run(change_counter.current)  # a connection a restart broke is replaced
            if seen is not None and version != seen:
                _drop_everything(keys, catalog, limits)
            seen = version
        except asyncio.CancelledError:
            raise
        except Exception:  # the database is away: what we cached may be stale once it is back
            log.warning("could not read the change counter; retrying", exc_info=True)
            if seen is not None:
                _drop_everything(keys, catalog, limits)
            seen = None
        await asyncio.sleep(settings.CHANGE_POLL_SECONDS)


def _drop_everything(keys: KeyCache, catalog: CatalogCache, limits: LimitStore) -> None:
    """The counter says something changed, not what: every key, the model/price table and
    the money counters (rebuilt from the ledger at their next use)."""
    keys.forget()
    catalog.invalidate()
    limits.forget_local_counters()
