"""The database is the ledger of record; a counter is a cache of it. A missing counter
(new window, Redis restart or flush, a limit edited) is rebuilt from the window's charges
plus finished-but-unpriced records."""
from __future__ import annotations

import logging

import redis
from django.conf import settings
from django.utils import timezone

from billing.selectors import ledger_units

from .. import db
from .counters import RESERVATION_INDEX, Counter, current_windows
from .store import LimitStore, counter_ttl

log = logging.getLogger(__name__)


async def rebuild(store: LimitStore, counter: Counter, *, force: bool = False) -> bool:
    """Set a counter from the ledger; lands only if no settle happened meanwhile."""
    client = store.client()
    version = await client.get(counter.version_key)
    # Requests still holding a reservation are left out: their settle will add them (and a
    # settle landing meanwhile changes the version, so this rebuild retries).
    pending = [g.decode() for g in await client.zrange(RESERVATION_INDEX, 0, -1)]
    value = await db.run(ledger_units, counter.kind, counter.owner_id, counter.window, pending)
    landed = await store.scripts["init"](keys=[counter.value_key, counter.version_key],
                                         args=[(version or b"").decode(), value, counter_ttl(),
                                               "force" if force else "nx"])
    return bool(landed)


async def standing(store: LimitStore, counter: Counter) -> tuple[int, int] | None:
    """(value, reserved) units of a counter, rebuilding it if missing; None if unreachable."""
    try:
        client = store.client()
        for _ in range(5):
            value, reserved = await client.mget(counter.value_key, counter.reserved_key)
            if value is not None:
                return int(value), int(reserved or 0)
            await rebuild(store, counter)
    except Exception:
        log.warning("limits store unreachable", exc_info=True)
    return None


async def recount(store: LimitStore, records: list[dict]) -> None:
    """Records replayed from the spool of a process that is gone (their settles went with
    it): the counters they count against are rebuilt from the ledger, which has them now.
    Their reservations, no longer renewed, are reaped as usual."""
    counters = set()
    for r in records:
        when = r.get("created") or timezone.now()
        for kind, owner in (("key", r["api_key_id"]), ("team", r["team_id"]), ("credit", r["team_id"])):
            counters |= {Counter(kind, owner, window, 0) for window in current_windows(kind, when)}
    if not counters:
        return
    try:
        pipe = store.client().pipeline(transaction=False)
        for counter in counters:
            pipe.incr(counter.version_key)
            pipe.expire(counter.version_key, counter_ttl())
            pipe.delete(counter.value_key)
        await pipe.execute()
    except Exception:  # without it, the counters are rebuilt when they expire
        log.warning("could not reset %d limit counters after a spool replay", len(counters), exc_info=True)


def ledger_changed(kind: str, owner_id: int) -> None:
    """A credit was added or a limit/budget edited: drop the counter (a key's: those of
    all three current windows, its period may have changed) so the next request
    rebuilds it from the ledger. The version bump makes a rebuild already in flight (which
    read the ledger before this change) fail and re-read. Called from admin, portal and
    commands (sync), after the commit."""
    if not settings.REDIS_URL:
        return  # the in-process counters expire within counter_ttl()
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
    try:
        for window in current_windows(kind, timezone.now()):
            counter = Counter(kind, owner_id, window, 0)
            client.incr(counter.version_key)
            client.delete(counter.value_key)
    except redis.RedisError:
        log.warning("could not reset the %s limit counters of %s", kind, owner_id, exc_info=True)
    finally:
        client.close()
