"""A gateway process's start-up (ASGI lifespan), in-process."""
from __future__ import annotations

import asyncio
import gc
from concurrent.futures import ThreadPoolExecutor

from proxy import runtime


def test_start_up_puts_what_it_built_out_of_the_collectors_reach(transactional_db, tmp_path, settings):
    """A full collection used to walk Django, the models and every module: 35-65 ms pauses under
    load that every request in flight waited out (the gateway's p99 at 32 concurrent calls).
    Start-up freezes them; objects made later are collected as before."""
    settings.SPOOL_DIR = str(tmp_path / "spool")
    gc.unfreeze()
    frozen_when_serving: list[int] = []

    async def lifespan() -> None:
        messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

        async def receive() -> dict:
            return next(messages)

        async def send(message: dict) -> None:
            if message["type"] == "lifespan.startup.complete":
                frozen_when_serving.append(gc.get_freeze_count())

        await runtime.lifespan(receive, send)

    try:
        with ThreadPoolExecutor(1) as thread:  # not the main thread: no process signal handlers
            thread.submit(asyncio.run, lifespan()).result(timeout=60)
        assert frozen_when_serving and frozen_when_serving[0] > 10_000  # Django alone is far more
    finally:
        gc.unfreeze()
