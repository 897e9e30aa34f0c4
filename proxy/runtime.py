"""Process-wide resources of a gateway process, started and stopped by ASGI lifespan."""
from __future__ import annotations

import logging

from . import auth, upstream
from .recorder import writer

log = logging.getLogger(__name__)


async def startup() -> None:
    auth.start_listener()


async def shutdown() -> None:
    await writer.drain()
    await upstream.close()
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
