"""Writes request records in batches, off the event loop.

Each request awaits its own record's commit before the client sees the end of its
response, so a record is never lost to a crash after the answer went out; concurrent
requests share one INSERT. Pricing is not the gateway's job: a Celery beat task prices
committed records every few seconds (billing.tasks.price_finished_requests), so the hot
path never touches the broker. Only without a broker (eager mode, `make run`) does the
writer price its own batches, off the event loop."""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .models import ApiKey, RequestRecord

log = logging.getLogger(__name__)

LAST_USED_EVERY = 60.0  # seconds between last_used updates of one key


class RecordWriter:
    """One writer thread per process: it keeps one database connection, and a plain
    executor hop costs far less than asgiref's sync_to_async on every batch."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="record-writer")
        self._pending: list[tuple[dict, asyncio.Future]] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._touched: dict[int, float] = {}
        self._pricing: set[asyncio.Task] = set()

    async def write(self, fields: dict) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run())
        future = loop.create_future()
        self._pending.append((fields, future))
        self._wakeup.set()
        await future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                await asyncio.get_running_loop().run_in_executor(self._executor, self._persist, [f for f, _ in batch])
            except Exception as exc:
                log.exception("could not write %d request records", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
            if settings.CELERY_TASK_ALWAYS_EAGER:
                task = asyncio.get_running_loop().create_task(sync_to_async(price_now, thread_sensitive=False)())
                self._pricing.add(task)
                task.add_done_callback(self._pricing.discard)

    def _persist(self, batch: list[dict]) -> int:
        try:
            return self._insert(batch)
        except Exception:
            connection.close()  # the next batch reconnects instead of reusing a broken connection
            raise

    def _insert(self, batch: list[dict]) -> int:
        now = time.monotonic()
        stale = sorted({f["api_key_id"] for f in batch if now - self._touched.get(f["api_key_id"], -1e9) > LAST_USED_EVERY})
        with transaction.atomic():
            records = RequestRecord.objects.bulk_create([RequestRecord(**f) for f in batch])
            if stale:
                ApiKey.objects.filter(pk__in=stale).update(last_used=timezone.now())
        for key_id in stale:
            self._touched[key_id] = now
        return len(records)

    async def drain(self) -> None:
        """Let queued writes and pricing hand-offs finish (ASGI shutdown)."""
        while self._pending:
            await asyncio.sleep(0.01)
        if self._pricing:
            await asyncio.gather(*self._pricing, return_exceptions=True)


def price_now() -> None:
    from billing.tasks import price_finished_requests

    try:
        price_finished_requests()  # called in-process, not queued
    except Exception:  # the next batch (or the beat task, with a broker) retries
        log.warning("pricing failed", exc_info=True)


writer = RecordWriter()
