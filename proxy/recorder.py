"""Writes request records in batches, off the event loop.

Each request awaits its own record's commit before the client sees the end of its
response, so a record is never lost to a crash after the answer went out; concurrent
requests share one INSERT. Pricing is then queued on Celery per batch (if the broker is
down, the sweeper prices them later)."""
from __future__ import annotations

import asyncio
import logging
import time

from asgiref.sync import sync_to_async
from django.db import transaction
from django.utils import timezone

from .models import ApiKey, RequestRecord

log = logging.getLogger(__name__)

LAST_USED_EVERY = 60.0  # seconds between last_used updates of one key


class RecordWriter:
    def __init__(self) -> None:
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
                ids = await sync_to_async(self._persist, thread_sensitive=False)([f for f, _ in batch])
            except Exception as exc:
                log.exception("could not write %d request records", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
            task = asyncio.get_running_loop().create_task(sync_to_async(queue_pricing, thread_sensitive=False)(ids))
            self._pricing.add(task)
            task.add_done_callback(self._pricing.discard)

    def _persist(self, batch: list[dict]) -> list[int]:
        now = time.monotonic()
        stale = sorted({f["api_key_id"] for f in batch if now - self._touched.get(f["api_key_id"], -1e9) > LAST_USED_EVERY})
        with transaction.atomic():
            records = RequestRecord.objects.bulk_create([RequestRecord(**f) for f in batch])
            if stale:
                ApiKey.objects.filter(pk__in=stale).update(last_used=timezone.now())
        for key_id in stale:
            self._touched[key_id] = now
        return [r.pk for r in records]

    async def drain(self) -> None:
        """Let queued writes and pricing hand-offs finish (ASGI shutdown)."""
        while self._pending:
            await asyncio.sleep(0.01)
        if self._pricing:
            await asyncio.gather(*self._pricing, return_exceptions=True)


def queue_pricing(record_ids: list[int]) -> None:
    from billing.tasks import price_requests

    try:
        price_requests.apply_async(args=[record_ids], retry=False)
    except Exception:
        log.warning("could not queue pricing for %d records; the sweeper will price them", len(record_ids),
                    exc_info=True)


writer = RecordWriter()
