"""Settle a finished request: its exact cost replaces its reserved worst case. Off the
response path: settles queue up and go to Redis together."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from decimal import Decimal

from billing.pricing import to_units

from .counters import RESERVATION_INDEX, Reservation
from .store import LimitStore, counter_ttl

log = logging.getLogger(__name__)

SETTLE_RETRY_SECONDS = 1.0


def _settle_call(reservation: Reservation, actual: Decimal, actual_tokens: int) -> tuple[list, list]:
    counters = reservation.counters
    keys = [reservation.key, RESERVATION_INDEX]
    for counter in counters:
        keys += [counter.value_key, counter.reserved_key, counter.version_key]
    args = [reservation.generation_id, to_units(actual), actual_tokens, len(counters),
            *[c.mode for c in counters], counter_ttl()]
    return keys, args


def settle_soon(store: LimitStore, reservation: Reservation, actual: Decimal, actual_tokens: int) -> None:
    """Settle without holding up the response. Settles queued meanwhile go to Redis in one
    pipelined round trip, and are retried until they land (a settle that finds its
    reservation gone makes the counter rebuild from the ledger, so a retry is always
    safe); until then the reservation keeps the larger worst case held. The settle of a
    call whose record is only in the spool waits for the record to reach the ledger."""
    call = _settle_call(reservation, actual, actual_tokens)
    if reservation.generation_id in store.held:
        store.deferred[reservation.generation_id] = call
        return
    _queue(store, [call])


def _queue(store: LimitStore, calls: list[tuple[list, list]]) -> None:
    store.queued.extend(calls)
    loop = asyncio.get_running_loop()
    if store.flusher is None or store.flusher.done() or store.flusher.get_loop() is not loop:
        store.flusher = loop.create_task(_flush_settles(store))


def hold(store: LimitStore, generation_ids: Iterable[str]) -> None:
    """These calls' records went to the spool, not to the database: settling them now would
    let a counter rebuilt from the ledger miss their cost, so their worst case stays held
    (and renewed) until `release`."""
    store.held.update(generation_ids)


def release(store: LimitStore, generation_ids: Iterable[str]) -> None:
    """Their records are in the ledger now: settle them."""
    calls = []
    for generation_id in generation_ids:
        store.held.discard(generation_id)
        call = store.deferred.pop(generation_id, None)
        if call is not None:
            calls.append(call)
    if calls:
        _queue(store, calls)


async def _flush_settles(store: LimitStore) -> None:
    queued = store.queued
    while queued:
        batch = queued[:]
        del queued[:]
        retry = []
        try:
            client = store.client()
            script = store.scripts["settle"]
            pipe = client.pipeline(transaction=False)
            for keys, args in batch:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            results = await pipe.execute(raise_on_error=False)
            for call, result in zip(batch, results, strict=True):
                if isinstance(result, Exception):  # e.g. NOSCRIPT after a Redis restart: one by one
                    try:
                        await script(keys=call[0], args=call[1])
                    except Exception:
                        retry.append(call)
                        continue
                store.live.pop(call[1][0], None)
        except Exception:
            retry = batch
        if retry:
            log.warning("could not settle %d reservations; retrying", len(retry), exc_info=True)
            queued[:0] = retry
            await asyncio.sleep(SETTLE_RETRY_SECONDS)


async def drain(store: LimitStore, timeout: float = 5.0) -> None:
    """Finish pending settles (ASGI shutdown); what cannot land in time is reaped later."""
    if store.flusher is not None and store.flusher.get_loop() is asyncio.get_running_loop():
        await asyncio.wait({store.flusher}, timeout=timeout)
    if store.deferred:
        log.warning("%d reservations stay held until another process replays their spooled records; "
                    "they are released after RESERVATION_SECONDS", len(store.deferred))
