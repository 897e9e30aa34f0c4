"""Holds that outlive their request: each process renews the reservations of its running
requests, and any process releases those whose process died (atomic and idempotent)."""
from __future__ import annotations

import time

from django.conf import settings

from .counters import RESERVATION_INDEX
from .store import LimitStore, counter_ttl


async def renew_live(store: LimitStore) -> None:
    """Push back the expiry of this process's running requests' reservations."""
    if not store.live:
        return
    client = store.client()
    deadline = int((time.time() + settings.RESERVATION_SECONDS) * 1000)
    pipe = client.pipeline(transaction=False)
    for generation_id in list(store.live):
        pipe.zadd(RESERVATION_INDEX, {generation_id: deadline}, xx=True)
        pipe.expire(f"th:res:{generation_id}", counter_ttl())
    await pipe.execute(raise_on_error=False)


async def reap_expired(store: LimitStore) -> int:
    store.client()
    return int(await store.scripts["reap"](keys=[RESERVATION_INDEX], args=[int(time.time() * 1000)]))
