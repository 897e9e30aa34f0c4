"""Hard spend limits and rate limits that hold across every gateway process.

Reserve, then settle. Before a request goes upstream its worst-case cost (an upper bound
of its input tokens, all priced as the dearest input class, plus max_tokens of output)
is reserved atomically, in one Lua script, against every money limit that applies — the
key's spend limit for its period (a day, ISO week or month in BILLING_TIME_ZONE), the
team's monthly budget, the team's prepaid balance — together with the key's RPM/TPM
windows. A request whose worst case does not fit is refused. When it ends the exact cost
is settled and the rest released. Each process renews the holds of its running requests,
so only a crashed process's reservations expire and are reaped.

Redis holds the shared counters (in integer units of 1e-10 USD, the precision of a
charge), one per limit window (counters.py). The database stays the ledger of record: a
missing counter (new window, Redis restart or flush) is rebuilt from the window's charges
plus finished-but-unpriced records, leaving out requests still holding a reservation
(their settle adds them). Every settle bumps a version and a rebuild only lands if none
happened while it read the database; a settle that finds its reservation gone drops the
counter so the ledger decides. Together, no request is lost or counted twice. Without
REDIS_URL the same scripts run on an in-process fake (one process, same semantics).

The package, by concept: `counters` (what a limit is and how its keys are named),
`scripts` (the Lua), `store` (the connection a process holds, in its Runtime), `reserve`,
`settle` (the queue of settles, and the settles that wait for a spooled record), `upkeep`
(renew and reap), `ledger` (rebuild from the database).
"""
from .counters import RESERVATION_INDEX, Counter, Reservation, billing_month, counters_for, current_windows
from .ledger import ledger_changed, rebuild, recount, standing
from .reserve import rate_headers, reserve
from .settle import drain, hold, release, settle_soon
from .store import LimitStore, counter_ttl, unavailable
from .upkeep import reap_expired, renew_live

__all__ = [
    "RESERVATION_INDEX", "Counter", "LimitStore", "Reservation", "billing_month", "counter_ttl", "counters_for",
    "current_windows", "drain", "hold", "ledger_changed", "rate_headers", "reap_expired", "rebuild", "recount",
    "release", "renew_live", "reserve", "settle_soon", "standing", "unavailable",
]
