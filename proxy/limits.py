"""Hard spend limits and rate limits that hold across every gateway process.

Reserve, then settle. Before a request goes upstream its worst-case cost (an upper bound
of its input tokens, all priced as the dearest input class, plus max_tokens of output)
is reserved atomically, in one Lua script, against every money limit that applies — the
key's monthly limit, the team's monthly budget, the team's prepaid balance — together
with the key's RPM/TPM windows. A request whose worst case does not fit is refused. When
it ends the exact cost is settled and the rest released. Each process renews the holds
of its running requests, so only a crashed process's reservations expire and are reaped.

Redis holds the shared counters (in integer units of 1e-10 USD, the precision of a
charge). The database stays the ledger of record: a missing counter (new month, Redis
restart or flush) is rebuilt from charges plus finished-but-unpriced records, leaving out
requests still holding a reservation (their settle adds them). Every settle bumps a
version and a rebuild only lands if none happened while it read the database; a settle
that finds its reservation gone drops the counter so the ledger decides. Together, no
request is lost or counted twice. Without
REDIS_URL the same scripts run on an in-process fake (one process, same semantics).
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from asgiref.sync import sync_to_async
from django.conf import settings

from billing.pricing import format_usd, from_units, to_units

from .errors import GatewayError

log = logging.getLogger(__name__)

RESERVATION_INDEX = "th:res:index"
RATE_WINDOW = 60                  # seconds (RPM/TPM: sliding window over two minute buckets)

_RESERVE = """
local worst = tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local rpm = tonumber(ARGV[5])
local tpm = tonumber(ARGV[6])
local w = tonumber(ARGV[7])
local n = tonumber(ARGV[8])
local ttl = tonumber(ARGV[9])
for i = 1, n do
  local value = redis.call('GET', KEYS[6 + 2*i - 1])
  if not value then return {'init', i} end
  local reserved = tonumber(redis.call('GET', KEYS[6 + 2*i]) or '0')
  local available
  if ARGV[9 + 2*i - 1] == 'cap' then
    available = tonumber(ARGV[9 + 2*i]) - tonumber(value) - reserved
  else
    available = tonumber(value) - reserved
  end
  if worst > available then return {'deny', i, tostring(available)} end
end
local rpm_left, tpm_left = -1, -1
if rpm > 0 then
  local used = tonumber(redis.call('GET', KEYS[4]) or '0') * w + tonumber(redis.call('GET', KEYS[3]) or '0')
  if used + 1 > rpm then return {'rate', 'requests', tostring(math.max(0, rpm - used))} end
  rpm_left = math.floor(rpm - used - 1)
end
if tpm > 0 then
  local used = tonumber(redis.call('GET', KEYS[6]) or '0') * w + tonumber(redis.call('GET', KEYS[5]) or '0')
  if used + tokens > tpm then return {'rate', 'tokens', tostring(math.max(0, tpm - used))} end
  tpm_left = math.floor(tpm - used - tokens)
end
local reserved_keys = {}
for i = 1, n do
  redis.call('INCRBY', KEYS[6 + 2*i], worst)
  redis.call('EXPIRE', KEYS[6 + 2*i], ttl)
  redis.call('EXPIRE', KEYS[6 + 2*i - 1], ttl)
  reserved_keys[i] = KEYS[6 + 2*i]
end
if rpm > 0 then redis.call('INCR', KEYS[3]); redis.call('EXPIRE', KEYS[3], 180) end
if tpm > 0 then redis.call('INCRBY', KEYS[5], tokens); redis.call('EXPIRE', KEYS[5], 180) end
redis.call('HSET', KEYS[1], 'worst', worst, 'tokens', tokens, 'tpm_key', tpm > 0 and KEYS[5] or '',
           'reserved_keys', table.concat(reserved_keys, ' '))
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return {'ok', tostring(rpm_left), tostring(tpm_left)}
"""

_SETTLE = """
local held = redis.call('EXISTS', KEYS[1]) == 1
local worst, held_tokens = 0, 0
if held then
  worst = tonumber(redis.call('HGET', KEYS[1], 'worst'))
  held_tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens'))
end
local actual = tonumber(ARGV[2])
local n = tonumber(ARGV[4])
for i = 1, n do
  local base = 2 + 3 * (i - 1)
  redis.call('INCR', KEYS[base + 3])
  redis.call('EXPIRE', KEYS[base + 3], tonumber(ARGV[5 + n]))
  if held and redis.call('DECRBY', KEYS[base + 2], worst) < 0 then redis.call('SET', KEYS[base + 2], 0) end
  if actual ~= 0 and redis.call('EXISTS', KEYS[base + 1]) == 1 then
    if not held then
      -- reaped or lost in a flush: a rebuild may or may not have counted this request, so
      -- drop the counter and let the ledger decide
      redis.call('DEL', KEYS[base + 1])
    elseif ARGV[4 + i] == 'cap' then redis.call('INCRBY', KEYS[base + 1], actual)
    else redis.call('DECRBY', KEYS[base + 1], actual) end
  end
end
if held then
  local tpm_key = redis.call('HGET', KEYS[1], 'tpm_key')
  if tpm_key and tpm_key ~= '' and redis.call('EXISTS', tpm_key) == 1 then
    if redis.call('INCRBY', tpm_key, tonumber(ARGV[3]) - held_tokens) < 0 then redis.call('SET', tpm_key, 0, 'KEEPTTL') end
  end
  redis.call('DEL', KEYS[1])
end
redis.call('ZREM', KEYS[2], ARGV[1])
return held and 1 or 0
"""

# Rebuild a counter from the database, unless a settle bumped its version meanwhile.
_INIT = """
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then return 0 end
if ARGV[4] == 'force' then redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
else redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', tonumber(ARGV[3])) end
return 1
"""

# Release reservations of requests that never settled (their process died).
_REAP = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 500)
for _, gen in ipairs(expired) do
  local res = 'th:res:' .. gen
  local worst = tonumber(redis.call('HGET', res, 'worst') or '0')
  local keys = redis.call('HGET', res, 'reserved_keys') or ''
  for key in string.gmatch(keys, '%S+') do
    if redis.call('DECRBY', key, worst) < 0 then redis.call('SET', key, 0) end
    -- its process died between commit and settle, perhaps: rebuild the counter from the ledger
    local prefix = string.sub(key, 1, -10)
    redis.call('INCR', prefix .. ':ver')
    redis.call('DEL', prefix .. ':spent', prefix .. ':balance')
  end
  redis.call('DEL', res)
  redis.call('ZREM', KEYS[1], gen)
end
return #expired
"""


def billing_month(when: datetime) -> str:
    return when.astimezone(ZoneInfo(settings.BILLING_TIME_ZONE)).strftime("%Y-%m")


@dataclass(frozen=True, slots=True)
class Counter:
    """One money limit: a monthly cap on a key or team, or a team's prepaid balance."""

    kind: str            # "key" | "team" | "credit"
    owner_id: int
    month: str           # "" for the (not monthly) credit balance
    limit_units: int     # the cap; unused for the balance

    @property
    def mode(self) -> str:
        return "balance" if self.kind == "credit" else "cap"

    @property
    def prefix(self) -> str:
        if self.kind == "credit":
            return f"th:credit:{self.owner_id}"
        return f"th:{self.month}:{self.kind}:{self.owner_id}"

    @property
    def value_key(self) -> str:
        return self.prefix + (":balance" if self.kind == "credit" else ":spent")

    @property
    def reserved_key(self) -> str:
        return self.prefix + ":reserved"

    @property
    def version_key(self) -> str:
        return self.prefix + ":ver"

    def describe(self, key) -> str:
        if self.kind == "key":
            return f"the monthly limit of key '{key.name or key.prefix}'"
        if self.kind == "team":
            return f"the monthly budget of team '{key.team_name}'"
        return f"the prepaid credit balance of team '{key.team_name}'"

    def error_code(self) -> str:
        return {"key": "key_monthly_limit_exceeded", "team": "team_budget_exceeded",
                "credit": "credit_balance_exhausted"}[self.kind]


def counters_for(key, when: datetime) -> list[Counter]:
    month = billing_month(when)
    counters = []
    if key.monthly_limit is not None:
        counters.append(Counter("key", key.id, month, to_units(key.monthly_limit)))
    if key.team_monthly_budget is not None:
        counters.append(Counter("team", key.team_id, month, to_units(key.team_monthly_budget)))
    if key.team_prepaid:
        counters.append(Counter("credit", key.team_id, "", 0))
    return counters


@dataclass(slots=True)
class Reservation:
    generation_id: str
    counters: list[Counter]
    worst_units: int
    tokens: int
    rate_headers: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"th:res:{self.generation_id}"


# --- the Redis connection (real, or an in-process fake without REDIS_URL) ----------------

_redis = None
_redis_loop = None
_fake_server = None
_scripts: dict[str, object] = {}


def redis_client():
    """The process's client, bound to the running event loop (one per gateway process;
    tests and management commands may run several loops one after another)."""
    global _redis, _redis_loop
    loop = asyncio.get_running_loop()
    if _redis is None or _redis_loop is not loop:
        _redis_loop = loop
        if settings.REDIS_URL:
            import redis.asyncio as aioredis

            _redis = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2,
                                             health_check_interval=30)
        else:
            import fakeredis

            global _fake_server
            _fake_server = _fake_server or fakeredis.FakeServer()  # one store per process, whatever the loop
            _redis = fakeredis.FakeAsyncRedis(server=_fake_server)
        for name, source in (("reserve", _RESERVE), ("settle", _SETTLE), ("init", _INIT), ("reap", _REAP)):
            _scripts[name] = _redis.register_script(source)
    return _redis


async def close() -> None:
    global _redis
    if _redis is not None:
        await _redis.aclose()
        _redis = None
        _scripts.clear()


def counter_ttl() -> int:
    """Idle counters expire: a limit edited or removed is rebuilt from the ledger. Without
    Redis, management commands (add_credit) cannot reach the in-process counters, so they
    are rebuilt more often."""
    return 3600 if settings.REDIS_URL else 30


def unavailable() -> GatewayError:
    return GatewayError(503, "Spend limits cannot be checked right now (the limits store is unreachable); "
                             "retry shortly.", type="server_error", code="limits_unavailable",
                        headers={"Retry-After": "1"})


# --- reserve / settle -------------------------------------------------------------------

async def reserve(key, generation_id: str, when: datetime, worst: Decimal, tokens: int) -> Reservation | None:
    """Reserve `worst` USD and `tokens` against every limit of the key; None if it has none."""
    counters = counters_for(key, when)
    if not counters and not key.rpm_limit and not key.tpm_limit:
        return None
    reservation = Reservation(generation_id, counters, to_units(worst), tokens)
    redis_client()
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
            result = [r.decode() if isinstance(r, bytes) else r for r in await _scripts["reserve"](keys=keys, args=args)]
            if result[0] != "init":
                break
            await rebuild(counters[int(result[1]) - 1])
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
            f"${format_usd(from_units(available))} left. Lower max_tokens, or raise the limit.",
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
    _live[generation_id] = reservation
    return reservation


def rate_headers(kind: str, limit: int, remaining: int, reset: str) -> dict[str, str]:
    return {f"x-ratelimit-limit-{kind}": str(limit), f"x-ratelimit-remaining-{kind}": str(max(0, remaining)),
            f"x-ratelimit-reset-{kind}": f"{reset}s"}


def _settle_call(reservation: Reservation, actual: Decimal, actual_tokens: int) -> tuple[list, list]:
    counters = reservation.counters
    keys = [reservation.key, RESERVATION_INDEX]
    for counter in counters:
        keys += [counter.value_key, counter.reserved_key, counter.version_key]
    args = [reservation.generation_id, to_units(actual), actual_tokens, len(counters),
            *[c.mode for c in counters], counter_ttl()]
    return keys, args


# Reservations of requests still running in this process: renewed until settled, so a long
# request keeps its hold while a dead process's holds expire.
_live: dict[str, Reservation] = {}
_queued: list[tuple[list, list]] = []
_flusher: asyncio.Task | None = None
SETTLE_RETRY_SECONDS = 1.0


def settle_soon(reservation: Reservation, actual: Decimal, actual_tokens: int) -> None:
    """Settle without holding up the response. Settles queued meanwhile go to Redis in one
    pipelined round trip, and are retried until they land (a settle that finds its
    reservation gone makes the counter rebuild from the ledger, so a retry is always
    safe); until then the reservation keeps the larger worst case held."""
    global _flusher
    _queued.append(_settle_call(reservation, actual, actual_tokens))
    if _flusher is None or _flusher.done():
        _flusher = asyncio.get_running_loop().create_task(_flush_settles())


async def _flush_settles() -> None:
    while _queued:
        batch = _queued[:]
        del _queued[:]
        retry = []
        try:
            client = redis_client()
            script = _scripts["settle"]
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
                _live.pop(call[1][0], None)
        except Exception:
            retry = batch
        if retry:
            log.warning("could not settle %d reservations; retrying", len(retry), exc_info=True)
            _queued[:0] = retry
            await asyncio.sleep(SETTLE_RETRY_SECONDS)


async def renew_live() -> None:
    """Push back the expiry of this process's running requests' reservations."""
    if not _live:
        return
    client = redis_client()
    deadline = int((time.time() + settings.RESERVATION_SECONDS) * 1000)
    pipe = client.pipeline(transaction=False)
    for generation_id in list(_live):
        pipe.zadd(RESERVATION_INDEX, {generation_id: deadline}, xx=True)
        pipe.expire(f"th:res:{generation_id}", counter_ttl())
    await pipe.execute(raise_on_error=False)


async def drain(timeout: float = 5.0) -> None:
    """Finish pending settles (ASGI shutdown); what cannot land in time is reaped later."""
    if _flusher is not None:
        await asyncio.wait({_flusher}, timeout=timeout)


async def rebuild(counter: Counter, *, force: bool = False) -> bool:
    """Set a counter from the ledger; lands only if no settle happened meanwhile."""
    from billing.selectors import ledger_units

    client = redis_client()
    version = await client.get(counter.version_key)
    # Requests still holding a reservation are left out: their settle will add them (and a
    # settle landing meanwhile changes the version, so this rebuild retries).
    pending = [g.decode() for g in await client.zrange(RESERVATION_INDEX, 0, -1)]
    value = await sync_to_async(ledger_units)(counter.kind, counter.owner_id, counter.month, pending)
    landed = await _scripts["init"](keys=[counter.value_key, counter.version_key],
                                    args=[(version or b"").decode(), value, counter_ttl(), "force" if force else "nx"])
    return bool(landed)


async def reap_expired() -> int:
    redis_client()
    return int(await _scripts["reap"](keys=[RESERVATION_INDEX], args=[int(time.time() * 1000)]))


async def standing(counter: Counter) -> tuple[int, int] | None:
    """(value, reserved) units of a counter, rebuilding it if missing; None if unreachable."""
    try:
        client = redis_client()
        for _ in range(5):
            value, reserved = await client.mget(counter.value_key, counter.reserved_key)
            if value is not None:
                return int(value), int(reserved or 0)
            await rebuild(counter)
    except Exception:
        log.warning("limits store unreachable", exc_info=True)
    return None


# --- called from admin, portal, commands (sync) -------------------------------------------

def ledger_changed(kind: str, owner_id: int) -> None:
    """A credit was added or a limit/budget edited: drop the counter so the next request
    rebuilds it from the ledger. The version bump makes a rebuild already in flight (which
    read the ledger before this change) fail and re-read. Call after the commit."""
    if not settings.REDIS_URL:
        return  # the in-process counters expire within counter_ttl()
    import redis
    from django.utils import timezone

    counter = Counter(kind, owner_id, "" if kind == "credit" else billing_month(timezone.now()), 0)
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
    try:
        client.incr(counter.version_key)
        client.delete(counter.value_key)
    except redis.RedisError:
        log.warning("could not reset limit counter %s", counter.prefix, exc_info=True)
    finally:
        client.close()
