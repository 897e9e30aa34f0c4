"""The process-wide resources of a gateway process in one object: the upstream connection
pool, the limits store and its settle queue, the record writer, the key cache, the
catalog snapshot, and the background tasks that keep them (change listener, reaper).

ASGI lifespan builds and starts one at start-up and closes it at shutdown. Where no
lifespan runs (tests on httpx.ASGITransport, management commands) `current()` builds one
on first use, without background tasks; tests install a fresh one each.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

from django.conf import settings

from . import changes, limits
from .auth import KeyCache
from .catalog import CatalogCache
from .limits import LimitStore
from .recorder import RecordWriter
from .upstream import Upstream

log = logging.getLogger(__name__)

REAP_EVERY = 30.0


class Runtime:
    def __init__(self) -> None:
        self.upstream = Upstream()
        self.limits = LimitStore()
        self.writer = RecordWriter()
        self.keys = KeyCache()
        self.catalog = CatalogCache()
        self._reaper: asyncio.Task | None = None
        self._listener: asyncio.Task | None = None

    def start(self) -> None:
        """Start the background tasks (on the running loop): the change listener (Redis) or
        the change-counter poll (without Redis), and the reaper."""
        loop = asyncio.get_running_loop()
        if settings.REDIS_URL:
            self._listener = loop.create_task(changes.listen(self.keys, self.catalog))
        else:
            self._listener = loop.create_task(changes.poll(self.keys, self.catalog, self.limits))
        self._reaper = loop.create_task(self._reap_forever())

    async def close(self) -> None:
        await _cancel(self._reaper)
        await self.writer.drain()
        await limits.drain(self.limits)
        await self.upstream.close()
        await self.limits.close()
        await _cancel(self._listener)

    async def _reap_forever(self) -> None:
        """Every gateway process renews the reservations of its running requests and releases
        those whose request died with its process (atomic and idempotent: all may run it)."""
        while True:
            await asyncio.sleep(REAP_EVERY)
            try:
                await limits.renew_live(self.limits)
                released = await limits.reap_expired(self.limits)
                if released:
                    log.warning("released %d expired reservations", released)
            except Exception:
                log.warning("reservation reaper failed", exc_info=True)


async def _cancel(task: asyncio.Task | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


_current: Runtime | None = None


def current() -> Runtime:
    """This process's runtime: a global read and a test on the hot path, nothing more."""
    return _current or install(Runtime())


def install(runtime: Runtime) -> Runtime:
    global _current  # the one process-wide reference; every resource hangs off it
    _current = runtime
    return runtime


async def lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                install(Runtime()).start()
            except Exception as exc:
                log.exception("start-up failed")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await current().close()
            finally:
                await send({"type": "lifespan.shutdown.complete"})
            return
