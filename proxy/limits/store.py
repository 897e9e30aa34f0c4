"""This process's handle on the shared limit counters (one per gateway process, held by
its Runtime): the Redis connection, real or an in-process fake without REDIS_URL, the
registered scripts, and the requests running here whose reservations it holds."""
from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings

from ..errors import GatewayError
from . import scripts
from .counters import Reservation


class LimitStore:
    def __init__(self) -> None:
        self._redis: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fake_server: Any = None  # one fake store for the store's life, whatever the loop
        self.scripts: dict[str, Any] = {}
        # Reservations of requests still running in this process: renewed until settled, so a
        # long request keeps its hold while a dead process's holds expire.
        self.live: dict[str, Reservation] = {}
        # Settles waiting for their round trip, and the task sending them (see settle.py).
        self.queued: list[tuple[list, list]] = []
        self.flusher: asyncio.Task | None = None
        # Calls whose record is in the spool, not yet in the database, and their settles
        # waiting for it (see settle.hold).
        self.held: set[str] = set()
        self.deferred: dict[str, tuple[list, list]] = {}

    def client(self):
        """The client, bound to the running event loop (tests and management commands may
        run several loops one after another)."""
        loop = asyncio.get_running_loop()
        if self._redis is None or self._loop is not loop:
            self._loop = loop
            if settings.REDIS_URL:
                self._redis = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2,
                                                      health_check_interval=30)
            else:
                import fakeredis  # only without Redis: it brings a Lua interpreter

                self._fake_server = self._fake_server or fakeredis.FakeServer()
                self._redis = fakeredis.FakeAsyncRedis(server=self._fake_server)
            for name, source in scripts.ALL.items():
                self.scripts[name] = self._redis.register_script(source)
        return self._redis

    def forget_local_counters(self) -> None:
        """Without Redis: drop every money counter of this process's fake store, so the next
        request rebuilds them from the ledger (another process changed limits or credits).
        The version bump makes a rebuild in flight re-read, as `ledger_changed` does."""
        if self._fake_server is None:
            return
        import fakeredis  # only without Redis, as above

        client = fakeredis.FakeRedis(server=self._fake_server)
        for pattern in ("th:*:spent", "th:credit:*:balance"):
            for key in client.scan_iter(match=pattern):
                prefix = key.decode().rsplit(":", 1)[0]
                client.incr(prefix + ":ver")
                client.delete(key)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
            self.scripts.clear()


def counter_ttl() -> int:
    """Idle counters expire: a limit edited or removed is rebuilt from the ledger. Without
    Redis, management commands (add_credit) cannot reach the in-process counters, so they
    are rebuilt more often."""
    return 3600 if settings.REDIS_URL else 30


def unavailable() -> GatewayError:
    return GatewayError(503, "Spend limits cannot be checked right now (the limits store is unreachable); "
                             "retry shortly.", type="server_error", code="limits_unavailable",
                        headers={"Retry-After": "1"})
