"""Process-wide resources of a gateway process, started and stopped by ASGI lifespan."""
from __future__ import annotations

import asyncio
import contextlib
import logging

from . import auth, limits, upstream
from .recorder import writer

log = logging.getLogger(__name__)


REAP_EVERY = 30.0
_reaper: asyncio.Task | None = None


async def _reap_forever() -> None:
    """Every gateway process renews the reservations of its running requests and releases
    those whose request died with its process (atomic and idempotent: all may run it)."""
    while True:
        await asyncio.sleep(REAP_EVERY)
        try:
            await limits.renew_live()
            released = await limits.reap_expired()
            if released:
                log.warning("released %d expired reservations", released)
        except Exception:
            log.warning("reservation reaper failed", exc_info=True)


async def startup() -> None:
    global _reaper
    auth.start_listener()
    _reaper = asyncio.get_running_loop().create_task(_reap_forever())


async def shutdown() -> None:
    if _reaper is not None:
        _reaper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await _reaper
    await writer.drain()
    await limits.drain()
    await upstream.close()
    await limits.close()
    await auth.stop_listener()


async def lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await startup()
            except Exception as exc:
                log.exception("start-up failed")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await shutdown()
            finally:
                await send({"type": "lifespan.shutdown.complete"})
            return
