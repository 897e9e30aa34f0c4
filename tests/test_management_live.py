"""The management API against real gateway processes (uvicorn, simulator, Redis): a key
made through the API works at once; disabling or deleting it stops it in every process
within 2 s; a daily limit refuses with 402 when spent and allows again the next day (the
processes' clock moved by the test, see tests/clock.py)."""
import random
import time
from datetime import UTC, timedelta
from decimal import Decimal

import httpx
import pytest
from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from billing.models import Charge, RequestRecord
from billing.rollups import roll_up
from billing.selectors import ledger_spend
from tokenhub_portal.accounts.models import ApiKey, Team
from tokenhub_portal.web.services import issue_key

from .clock import set_clock
from .conftest import CLOCK_FILE, wait_until

BODY = {"model": "claude-haiku-4-5", "max_tokens": 40, "messages": [{"role": "user", "content": "hi [[sim:words=30]]"}]}


@pytest.fixture
def pair(transactional_db, seeded, gateway_pair, pricing_worker):
    yield gateway_pair
    set_clock(CLOCK_FILE, None)
    wait_until(lambda: not RequestRecord.objects.filter(priced_at__isnull=True).exists(), timeout=60)


@pytest.fixture
def manager(transactional_db):
    team = Team.objects.create(name="live-mgmt")
    return issue_key(team, name="ci", kind=ApiKey.Kind.MANAGEMENT).plaintext


def chat(url, key, body=BODY):
    return httpx.post(f"{url}/api/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"},
                      timeout=30)


def manage(url, method, path, key, **kw):
    return httpx.request(method, f"{url}/api/v1{path}", headers={"Authorization": f"Bearer {key}"}, timeout=30, **kw)


def refused_everywhere_within(urls, key, seconds=2.0):
    """Seconds until every gateway refuses the key with 401 (fails past `seconds`)."""
    start = time.monotonic()
    pending = set(urls)
    while pending and time.monotonic() - start < seconds:
        pending = {u for u in pending if chat(u, key).status_code != 401}
        if pending:
            time.sleep(0.05)
    assert not pending, f"still accepted by {pending} after {seconds}s"
    return time.monotonic() - start


def test_a_key_made_through_the_api_works_at_once_and_stops_everywhere(pair, manager):
    if not settings.REDIS_URL:
        pytest.skip("several gateway processes need Redis to share key changes (CI has it)")
    a, b = pair
    created = manage(a, "POST", "/keys", manager, json={"name": "pipeline-7", "limit": "1", "limit_reset": "daily"})
    assert created.status_code == 201, created.text
    secret, key_hash = created.json()["key"], created.json()["data"]["hash"]
    for url in pair:
        assert chat(url, secret).status_code == 200
    assert manage(b, "PATCH", f"/keys/{key_hash}", manager, json={"disabled": True}).status_code == 200
    refused_everywhere_within(pair, secret)
    assert chat(a, secret).json()["error"]["code"] == "disabled_api_key"
    assert manage(a, "PATCH", f"/keys/{key_hash}", manager, json={"disabled": False}).status_code == 200
    wait_until(lambda: all(chat(u, secret).status_code == 200 for u in pair), timeout=2)
    assert manage(a, "DELETE", f"/keys/{key_hash}", manager).status_code == 200
    refused_everywhere_within(pair, secret)
    assert chat(b, secret).json()["error"]["code"] == "revoked_api_key"
    # its usage is on record, through the management API too
    used = manage(a, "GET", "/requests", manager, params={"key": key_hash}).json()["data"]
    ok = RequestRecord.objects.filter(api_key__key_hash=key_hash, status="success").count()
    assert len(used) == ok >= 4 and {r["status"] for r in used} == {"success"}  # refusals are not metered


def test_management_keys_are_refused_on_the_model_endpoints_of_every_process(pair, manager):
    for url in set(pair):
        r = chat(url, manager)
        assert r.status_code == 403 and r.json()["error"]["code"] == "management_key_not_allowed"
    assert not RequestRecord.objects.exists()  # refused before anything is metered


def test_daily_limit_refuses_when_spent_and_allows_again_the_next_day(pair, manager, make_key):
    if not settings.REDIS_URL:
        pytest.skip("two gateway processes share limits through Redis (CI has it)")
    a, b = pair
    # a day of its own, far from other runs' counters in the shared Redis
    day = (timezone.now() + timedelta(days=random.randint(400, 40000))).astimezone(UTC)
    day = day.replace(hour=12, minute=0, second=0, microsecond=0)
    set_clock(CLOCK_FILE, day)
    limit = Decimal("0.01")  # three or four answers of ~150 words at Sonnet prices
    body = {"model": "claude-sonnet-4-6", "max_tokens": 250,
            "messages": [{"role": "user", "content": "go [[sim:words=150]]"}]}
    created = manage(a, "POST", "/keys", manager, json={"name": "daily", "limit": str(limit), "limit_reset": "daily"})
    assert created.status_code == 201, created.text
    secret, key_hash = created.json()["key"], created.json()["data"]["hash"]
    statuses = [chat(pair[i % 2], secret, body).status_code for i in range(8)]
    assert statuses.count(200) >= 2 and statuses[-2:] == [402, 402], statuses
    refused = chat(b, secret, body).json()["error"]
    assert refused["code"] == "key_daily_limit_exceeded" and "daily limit" in refused["message"]
    assert f"It resets at {(day + timedelta(days=1)):%Y-%m-%d} 00:00" in refused["message"]
    key = ApiKey.objects.get(key_hash=key_hash)
    wait_until(lambda: not RequestRecord.objects.filter(api_key=key, priced_at__isnull=True).exists(), timeout=60)
    spent = Charge.objects.filter(api_key=key).aggregate(total=Sum("amount"))["total"]
    assert 0 < spent <= limit
    assert ledger_spend("key", key.pk, f"{day:%Y-%m-%d}") == spent  # every charge is dated in that day
    shown = manage(a, "GET", f"/keys/{key_hash}", manager).json()["data"]
    assert Decimal(shown["usage"]) == Decimal(shown["usage_daily"]) == spent
    assert Decimal(shown["limit_remaining"]) == limit - spent

    roll_up()  # as the beat would have, long before midnight: past hours' figures are read from the roll-ups
    set_clock(CLOCK_FILE, day + timedelta(days=1, minutes=1))  # just past midnight, on both processes
    time.sleep(0.1)
    assert chat(a, secret, body).status_code == 200 and chat(b, secret, body).status_code == 200
    shown = manage(b, "GET", f"/keys/{key_hash}", manager).json()["data"]
    assert Decimal(shown["usage_weekly"]) >= spent or day.weekday() == 6  # a new week starts on Monday
    info = httpx.get(f"{a}/api/v1/key", headers={"Authorization": f"Bearer {secret}"}).json()["data"]
    assert info["limit_reset"] == "daily" and info["usage_period_start"].startswith(f"{day + timedelta(days=1):%Y-%m-%d}")
