"""The process-wide resources of a gateway process in one object: the upstream connection
pool, the limits store and its settle queue, the record writer (and its spool), the key
cache, the catalog snapshot, and the background tasks that keep them (change listener,
reaper).

ASGI lifespan builds and starts one at start-up (replaying first what an earlier process
left in the spool) and closes it at shutdown. Where no lifespan runs (tests on
httpx.ASGITransport, management commands) `current()` builds one on first use, without
background tasks; tests install a fresh one each.

Graceful stop: on SIGTERM the server stops accepting connections and waits for running
requests. The runtime bounds that wait at GRACEFUL_SECONDS whatever the server's own
settings: it then cancels the API requests still running, which ends them as client
cancels do (a stream is billed for the input and the output delivered). At shutdown it
waits for those requests to write their records, then flushes the record writer (and the
spool, if the database is back) and the queue of reservation settles.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable

from django.conf import settings

from . import changes, limits
from .auth import KeyCache
from .catalog import CatalogCache
from .limits import LimitStore
from .recorder import RecordWriter
from .upstream import Upstream

log = logging.getLogger(__name__)

REAP_EVERY = 30.0
CLEANUP_SECONDS = 5.0  # for requests cancelled at the end of the grace period to write their records


class Runtime:
    def __init__(self) -> None:
        self.upstream = Upstream()
        self.limits = LimitStore()
        self.writer = RecordWriter(self.limits)
        self.keys = KeyCache()
        self.catalog = CatalogCache()
        self._reaper: asyncio.Task | None = None
        self._listener: asyncio.Task | None = None
        self._requests: set[asyncio.Task] = set()
        self._deadline: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        """Replay what an earlier process left in the spool, then start the background tasks
        (on the running loop): the change listener (Redis) or the change-counter poll (without
        Redis), and the reaper."""
        await self.writer.recover()
        loop = asyncio.get_running_loop()
        if settings.REDIS_URL:
            self._listener = loop.create_task(changes.listen(self.keys, self.catalog))
        else:
            self._listener = loop.create_task(changes.poll(self.keys, self.catalog, self.limits))
        self._reaper = loop.create_task(self._reap_forever())
        _on_stop_signals(loop, self.begin_stop)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Around every API request: the requests a stop waits for, and cancels when it must."""
        task = asyncio.current_task()
        if task is None:
            yield
            return
        self._requests.add(task)
        try:
            yield
        finally:
            self._requests.discard(task)

    def begin_stop(self) -> None:
        """The process was asked to stop: running requests get GRACEFUL_SECONDS to finish."""
        if self._deadline is None:
            if self._requests:
                log.warning("stopping: %d running requests get up to %ss to finish", len(self._requests),
                            settings.GRACEFUL_SECONDS)
            self._deadline = asyncio.get_running_loop().call_later(settings.GRACEFUL_SECONDS, self.cancel_running)

    def cancel_running(self) -> None:
        if self._requests:
            log.warning("cancelling %d requests still running after %ss", len(self._requests), settings.GRACEFUL_SECONDS)
        for task in list(self._requests):
            task.cancel(f"the process is stopping and its {settings.GRACEFUL_SECONDS}s grace period is over")

    async def _requests_finished(self) -> None:
        if self._requests:
            await asyncio.wait(set(self._requests), timeout=CLEANUP_SECONDS)

    async def close(self) -> None:
        # The server has stopped accepting and waited for running requests (or cancelled
        # them); requests cancelled a moment ago may still be writing their records.
        await self._requests_finished()
        if self._requests:  # the server gave up waiting before our deadline: the same cancel, now
            self.cancel_running()
            await self._requests_finished()
        if self._deadline is not None:
            self._deadline.cancel()
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


def _on_stop_signals(loop: asyncio.AbstractEventLoop, begin_stop: Callable[[], None]) -> None:
    """Chain a handler in front of the server's own SIGTERM/SIGINT handler (uvicorn's sets
    its should-exit flag; it is still called, as before)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: object, previous: object = previous) -> None:
            loop.call_soon_threadsafe(begin_stop)
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:  # no server handler: behave as if we were not here
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)

        signal.signal(sig, handler)


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


def freeze_startup_heap() -> None:
    """Takes what start-up built (Django, the models, every module: objects that live as long
    as the process) out of the cyclic collector's reach. A full collection walked all of it,
    a 35-65 ms pause of the event loop every few seconds under load that every request in
    flight waited out: at 32 concurrent calls, the gateway's p99. Reference counting still
    frees these objects; only a cycle among them that becomes garbage later stays."""
    gc.collect()  # start-up's own garbage goes first, not into the frozen set
    gc.freeze()


async def lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await install(Runtime()).start()
            except Exception as exc:
                log.exception("start-up failed")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            freeze_startup_heap()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await current().close()
            finally:
                await send({"type": "lifespan.shutdown.complete"})
            return
