"""Key spend limits that reset daily, weekly (Monday) or monthly in BILLING_TIME_ZONE:
window ids and bounds, counters keyed on the window, rebuilt from that window's ledger,
refusing when the window is spent and allowing again in the next one."""
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import redis
from asgiref.sync import async_to_sync
from django.utils import timezone

from billing.months import limit_window, window_bounds
from billing.pricing import to_units
from billing.selectors import ledger_spend
from billing.services import charge_request
from proxy import limits
from proxy.errors import GatewayError
from proxy.runtime import current

pytestmark = pytest.mark.django_db


def test_window_ids_and_bounds(settings):
    settings.BILLING_TIME_ZONE = "UTC"
    when = datetime(2026, 11, 29, 23, 59, 59, tzinfo=UTC)           # a Sunday
    assert limit_window("daily", when) == "2026-11-29"
    assert limit_window("weekly", when) == "2026-W48"
    assert limit_window("monthly", when) == limit_window(None, when) == "2026-11"
    assert window_bounds("2026-W48") == (datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC))
    assert limit_window("weekly", when + timedelta(seconds=1)) == "2026-W49"  # Monday starts a week
    assert window_bounds("2026-11-29") == (datetime(2026, 11, 29, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC))
    # ISO weeks cross years: 2027-01-01 (a Friday) is in the last week of 2026
    assert limit_window("weekly", datetime(2027, 1, 1, tzinfo=UTC)) == "2026-W53"
    assert window_bounds("2026-12")[1] == datetime(2027, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        window_bounds("2026-13-45x")


def test_windows_are_cut_in_the_billing_time_zone(settings):
    settings.BILLING_TIME_ZONE = "Europe/Berlin"
    # 23:30 UTC on 28 March 2026 is already the 29th in Berlin; that day has 23 hours (DST)
    when = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)
    assert limit_window("daily", when) == "2026-03-29"
    start, end = window_bounds("2026-03-29")
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=23)
    assert start.astimezone(UTC) == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)


def test_counters_are_keyed_on_the_window(make_key):
    when = datetime(2026, 11, 29, 12, tzinfo=UTC)
    for reset, prefix in (("daily", "th:2026-11-29:key:"), ("weekly", "th:2026-W48:key:"),
                          ("monthly", "th:2026-11:key:"), (None, "th:2026-11:key:")):
        issued = make_key(name=f"k-{reset}", monthly_limit=Decimal("1"), limit_reset=reset)
        key = async_to_sync(current().keys.lookup)(issued.api_key.key_hash)
        (counter,) = limits.counters_for(key, when)
        assert counter.prefix == f"{prefix}{issued.api_key.pk}" and counter.period == (reset or "monthly")
        assert counter.error_code() == f"key_{reset or 'monthly'}_limit_exceeded"


def test_the_ledger_is_read_for_the_window_only(make_key, make_record, settings):
    settings.BILLING_TIME_ZONE = "UTC"
    issued = make_key(monthly_limit=Decimal("1"), limit_reset="daily")
    key_id = issued.api_key.pk
    monday, tuesday = datetime(2031, 3, 3, 10, tzinfo=UTC), datetime(2031, 3, 4, 10, tzinfo=UTC)
    charge_request(make_record(issued, created=monday, input_tokens=100_000).pk)       # $0.30
    make_record(issued, created=tuesday, input_tokens=10_000)                        # $0.03, not priced yet
    assert ledger_spend("key", key_id, "2031-03-03") == Decimal("0.3")
    assert ledger_spend("key", key_id, "2031-03-04") == Decimal("0.03")
    assert ledger_spend("key", key_id, "2031-W10") == Decimal("0.33")
    assert ledger_spend("key", key_id, "2031-03") == Decimal("0.33")
    assert ledger_spend("key", key_id, "2031-03-05") == 0


def test_a_spent_daily_limit_refuses_and_the_next_day_allows(make_key, make_record):
    """Reserve-and-settle on the shared counters: the day's counter is rebuilt from that
    day's charges; the next day starts from its own (empty) window."""
    issued = make_key(monthly_limit=Decimal("0.50"), limit_reset="daily")
    key = async_to_sync(current().keys.lookup)(issued.api_key.key_hash)
    day = datetime(2031, 5, 6, 9, tzinfo=UTC)
    charge_request(make_record(issued, created=day - timedelta(hours=1), input_tokens=100_000).pk)  # $0.30 spent

    async def scenario():
        store = current().limits
        try:
            # $0.15 fits, then $0.10 more does not ($0.05 left)
            held = await limits.reserve(store, key, "chatcmpl-d1", day, Decimal("0.15"), 10)
            limits.settle_soon(store, held, Decimal("0.15"), 10)
            await limits.drain(store)
            with pytest.raises(GatewayError) as refused:
                await limits.reserve(store, key, "chatcmpl-d2", day + timedelta(hours=14), Decimal("0.10"), 10)
            assert refused.value.status == 402 and refused.value.code == "key_daily_limit_exceeded"
            assert "It resets at 2031-05-07 00:00" in refused.value.message
            # the next day: a fresh window, rebuilt from that day's (empty) ledger
            next_day = day + timedelta(days=1)
            held = await limits.reserve(store, key, "chatcmpl-d3", next_day, Decimal("0.45"), 10)
            assert held.counters[0].window == "2031-05-07"
            limits.settle_soon(store, held, Decimal("0.40"), 10)
            await limits.drain(store)
            with pytest.raises(GatewayError):
                await limits.reserve(store, key, "chatcmpl-d4", next_day, Decimal("0.11"), 10)
            # ...and the day before still holds its own figures
            client = store.client()
            (old,) = limits.counters_for(key, day)
            assert int(await client.get(old.value_key)) == to_units(Decimal("0.45"))
        finally:
            client = store.client()
            for when in (day, day + timedelta(days=1)):
                (c,) = limits.counters_for(key, when)
                await client.delete(c.value_key, c.reserved_key, c.version_key)
            await store.close()

    async_to_sync(scenario)()


def test_weekly_limit_counts_the_whole_week(make_key, make_record):
    issued = make_key(monthly_limit=Decimal("0.50"), limit_reset="weekly")
    key = async_to_sync(current().keys.lookup)(issued.api_key.key_hash)
    monday = datetime(2031, 6, 2, 9, tzinfo=UTC)
    charge_request(make_record(issued, created=monday, input_tokens=100_000).pk)  # $0.30 on Monday

    async def scenario():
        store = current().limits
        try:
            with pytest.raises(GatewayError) as refused:  # Sunday: the same week, $0.20 left
                await limits.reserve(store, key, "chatcmpl-w1", monday + timedelta(days=6), Decimal("0.25"), 10)
            assert refused.value.code == "key_weekly_limit_exceeded"
            held = await limits.reserve(store, key, "chatcmpl-w2", monday + timedelta(days=7), Decimal("0.25"), 10)
            assert held.counters[0].window == "2031-W24"
            limits.settle_soon(store, held, Decimal("0"), 0)
            await limits.drain(store)
        finally:
            client = store.client()
            for when in (monday, monday + timedelta(days=7)):
                (c,) = limits.counters_for(key, when)
                await client.delete(c.value_key, c.reserved_key, c.version_key)
            await store.close()

    async_to_sync(scenario)()


def test_editing_a_keys_period_drops_every_window_counter(make_key, settings):
    if not settings.REDIS_URL:
        pytest.skip("the in-process fallback's counters expire on their own (counter_ttl)")
    issued = make_key(monthly_limit=Decimal("1"))
    client = redis.Redis.from_url(settings.REDIS_URL)
    names = [limits.Counter("key", issued.api_key.pk, w, 0).value_key
             for w in limits.current_windows("key", timezone.now())]
    assert len(names) == 3
    client.mset(dict.fromkeys(names, 5))
    limits.ledger_changed("key", issued.api_key.pk)
    assert client.exists(*names) == 0
