"""Reserve a request's worst case against every limit of its key, in one script: its
money limits and its RPM/TPM windows. A request whose worst case does not fit is refused
with a 402 (money) or 429 (rate) that says what to change."""
from __future__ import annotations

import logging
import math
import time
from datetime import datetime
from decimal import Decimal

from django.conf import settings

from billing.pricing import format_usd, from_units, to_units

from ..errors import GatewayError
from .counters import RESERVATION_INDEX, Reservation, counters_for
from .ledger import rebuild
from .store import LimitStore, counter_ttl, unavailable

log = logging.getLogger(__name__)

RATE_WINDOW = 60                  # seconds (RPM/TPM: sliding window over two minute buckets)


async def reserve(store: LimitStore, key, generation_id: str, when: datetime, worst: Decimal,
                  tokens: int) -> Reservation | None:
    """Reserve `worst` USD and `tokens` against every limit of the key; None if it has none."""
    counters = counters_for(key, when)
    if not counters and not key.rpm_limit and not key.tpm_limit:
        return None
    reservation = Reservation(generation_id, counters, to_units(worst), tokens)
    store.client()
    now = time.time()
    minute = int(now // RATE_WINDOW)
    elapsed = now - minute * RATE_WINDOW
    keys = [reservation.key, RESERVATION_INDEX,
            f"th:rpm:{key.id}:{minute}", f"th:rpm:{key.id}:{minute - 1}",
            f"th:tpm:{key.id}:{minute}", f"th:tpm:{key.id}:{minute - 1}"]
    args = [generation_id, int((now + settings.RESERVATION_SECONDS) * 1000), reservation.worst_units, tokens,
            key.rpm_limit or 0, key.tpm_limit or 0, repr(1 - elapsed / RATE_WINDOW), len(counters), counter_ttl()]
    for counter in counters:
        keys += [counter.value_key, counter.reserved_key]
        args += [counter.mode, counter.limit_units]
    try:
        for _ in range(5):
            raw = await store.scripts["reserve"](keys=keys, args=args)
            result = [r.decode() if isinstance(r, bytes) else r for r in raw]
            if result[0] != "init":
                break
            await rebuild(store, counters[int(result[1]) - 1])
        else:
            raise unavailable()
    except GatewayError:
        raise
    except Exception:
        log.warning("limits store unreachable", exc_info=True)
        raise unavailable() from None
    retry_after = str(max(1, math.ceil(RATE_WINDOW - elapsed)))
    if result[0] == "deny":
        counter = counters[int(result[1]) - 1]
        available = max(0, int(Decimal(result[2])))
        raise GatewayError(
            402,
            f"This request could cost up to ${format_usd(from_units(reservation.worst_units))} "
            f"(input upper bound plus max_tokens of output) but {counter.describe(key)} has "
            f"${format_usd(from_units(available))} left. Lower max_tokens, or raise the limit.{counter.resets()}",
            type="insufficient_quota", code=counter.error_code(), headers={"x-should-retry": "false"},
        )
    if result[0] == "rate":
        kind, remaining = result[1], int(float(result[2]))
        limit = key.rpm_limit if kind == "requests" else key.tpm_limit
        unit = "requests per minute" if kind == "requests" else "tokens per minute"
        raise GatewayError(
            429, f"Rate limit reached for key '{key.name or key.prefix}': {limit} {unit}. "
                 f"Please try again in {retry_after}s.",
            type=kind, code="rate_limit_exceeded",
            headers={"Retry-After": retry_after, **rate_headers(kind, limit, remaining, retry_after)},
        )
    if key.rpm_limit:
        reservation.rate_headers.update(rate_headers("requests", key.rpm_limit, int(result[1]), retry_after))
    if key.tpm_limit:
        reservation.rate_headers.update(rate_headers("tokens", key.tpm_limit, int(result[2]), retry_after))
    store.live[generation_id] = reservation
    return reservation


def rate_headers(kind: str, limit: int, remaining: int, reset: str) -> dict[str, str]:
    return {f"x-ratelimit-limit-{kind}": str(limit), f"x-ratelimit-remaining-{kind}": str(max(0, remaining)),
            f"x-ratelimit-reset-{kind}": f"{reset}s"}
