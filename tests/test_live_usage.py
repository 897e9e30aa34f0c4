"""Live numbers: dashboards, top keys, the keys page and the month's report read the roll-ups
plus the not-yet-rolled-up tail (charges, and finished requests still being priced), so a
call shows up at once with or without Celery beat — and nothing is counted twice. Small
money is never shown as $0.00. Without a broker, `make run` runs the beat schedule
in-process."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.template import Context, Template
from django.test import Client

from billing.models import Charge, RequestRecord, RollupState, UsageRollup
from billing.rollups import roll_up
from billing.selectors import usage, usage_by, usage_total
from billing.services import charge_request, price_pending
from tokenhub_portal.accounts.models import Membership
from tokenhub_portal.web.money import usd_text

NOW = datetime.now(UTC)
OLD = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


def total_of(team_id):
    row = usage_total(team_id=team_id, start=OLD - timedelta(days=1))
    return row["cost"], row["requests"], row["errors"]


@pytest.fixture
def calls(make_key, make_record):
    """Three hours ago (rolled up), a moment ago (charged, not rolled up), and now (not
    even priced yet)."""
    key = make_key("live", name="live-key")
    rolled = make_record(key, created=OLD + timedelta(minutes=5), input_tokens=1000, output_tokens=100)
    failed = make_record(key, status="error", created=OLD + timedelta(minutes=6))
    for r in (rolled, failed):
        charge_request(r.id)
    roll_up()
    charged = make_record(key, created=NOW - timedelta(seconds=30), input_tokens=50, output_tokens=20)
    charge_request(charged.id)
    pending = make_record(key, "claude-haiku-4-5", created=NOW - timedelta(seconds=1), input_tokens=11,
                          output_tokens=7, cache_read_tokens=5)
    return key, rolled, failed, charged, pending


def test_usage_is_rollups_plus_charges_plus_unpriced(calls):
    key, rolled, failed, charged, pending = calls
    team_id = key.api_key.team_id
    cost, requests, errors = total_of(team_id)
    assert (requests, errors) == (4, 1)
    ledger = sum((c.amount for c in Charge.objects.all()), Decimal(0))
    price_pending()  # the pending one gets its charge: the same total, to the 1e-10
    assert cost > ledger
    assert total_of(team_id) == (sum((c.amount for c in Charge.objects.all()), Decimal(0)), 4, 1)
    roll_up()  # and once rolled up, still the same
    assert total_of(team_id)[0] == cost
    by_model = usage_by("model_id", team_id=team_id)
    assert {m.public_id for m in [rolled.model, pending.model]} == {
        r.model.public_id for r in RequestRecord.objects.filter(id__in=[rolled.id, pending.id])}
    assert sum(r["requests"] for r in by_model.values()) == 4


def test_without_any_rollup_run_everything_comes_from_the_ledger(make_key, make_record):
    """Beat never ran (`make run` before this change): no watermark, nothing is lost."""
    key = make_key("nobeat")
    old = make_record(key, created=NOW - timedelta(days=2), input_tokens=10, output_tokens=10)
    charge_request(old.id)
    RollupState.objects.all().delete()
    UsageRollup.objects.all().delete()
    assert usage_total(team_id=key.api_key.team_id)["requests"] == 1
    assert usage_total(team_id=key.api_key.team_id)["cost"] == Charge.objects.get(request=old).amount


def test_groups_by_day_in_the_billing_time_zone(calls):
    key = calls[0]
    rows = usage(["day", "api_key_id"], team_id=key.api_key.team_id)
    days = {r["day"] for r in rows}
    assert NOW.date() in days or (NOW - timedelta(hours=3)).date() in days
    assert sum(r["requests"] for r in rows) == 4


@pytest.fixture
def owner_client(calls):
    key = calls[0]
    user = get_user_model().objects.create_user("owner", "owner@example.com", "pw-live-usage-1")
    Membership.objects.create(user=user, team=key.api_key.team, role="owner")
    client = Client()
    client.force_login(user)
    return client


def test_dashboard_chart_and_top_keys_show_calls_not_rolled_up(calls, owner_client):
    key, rolled, failed, charged, pending = calls
    body = owner_client.get("/").content.decode()
    assert 'data-model="claude-haiku-4-5"' in body  # the bar of the request still being priced
    top = re.search(r'<table id="top-keys">.*?</table>', body, re.S).group(0)
    assert "live-key" in top and ">4<" in top
    cost = usage_total(team_id=key.api_key.team_id, start=OLD)["cost"]
    assert f"{cost.quantize(Decimal('1e-10'))}" in body  # exact spend, including the unpriced call
    keys = owner_client.get("/keys/").content.decode()
    assert usd_text(cost) in keys
    report = owner_client.get(f"/reports/{NOW:%Y-%m}/").content.decode()
    assert "claude-haiku-4-5" in report


def test_a_sub_cent_spend_is_never_shown_as_zero(make_key, make_record, client, django_user_model):
    key = make_key("tiny", name="tiny-key")
    # 110 input tokens at $3/M = $0.00033
    record = make_record(key, input_tokens=110, output_tokens=0)
    charge_request(record.id)
    assert Charge.objects.get(request=record).amount == Decimal("0.00033")
    user = django_user_model.objects.create_user("tiny-owner", "t@example.com", "pw-tiny-1")
    Membership.objects.create(user=user, team=key.api_key.team, role="owner")
    client.force_login(user)
    pages = ["/", "/keys/", "/reports/", f"/reports/{NOW:%Y-%m}/", f"/reports/{NOW:%Y-%m}/statement/"]
    for path in pages:
        body = client.get(path).content.decode()
        assert "$0.00033" in body, path
        assert 'title="0.0003300000 USD"' in body, path  # the exact value on hover
        text = re.sub(r"<[^>]+>", " ", body)
        assert not re.search(r"\$0\.00(?!\d)", text.replace("$0.00033", "")), path


@pytest.mark.parametrize(("value", "places", "shown"), [
    ("0", None, "$0.00"), ("0.00033", None, "$0.00033"), ("0.0003349", None, "$0.00033"),
    ("0.0000000001", None, "$0.0000000001"), ("0.00033", 2, "$0.00033"), ("0.004", 2, "$0.004"),
    ("1234.5", None, "$1,234.50"), ("1.004", None, "$1.00"), ("-0.00002", None, "-$0.00002"),
    (None, None, "—"), ("garbage", None, "—"),
])
def test_usd_filter(value, places, shown):
    tpl = Template("{% load portal %}{{ v|usd" + (f":{places}" if places else "") + " }}")
    out = tpl.render(Context({"v": Decimal(value) if value not in (None, "garbage") else value}))
    assert re.sub(r"<[^>]+>", "", out) == shown
    if shown.startswith(("$", "-$")) and value != "0":
        assert f'title="{format(Decimal(value).quantize(Decimal("1e-10")), "f")} USD"' in out


def test_in_process_beat_runs_the_schedule(transactional_db, seeded, make_key, make_record):
    """`make run` without a broker: the beat thread prices and rolls up on its own."""
    from tokenhub_portal.celery import app
    from tokenhub_portal.web.beat import InProcessBeat

    from .conftest import wait_until

    key = make_key("beat")
    record = make_record(key, input_tokens=10, output_tokens=10)
    beat = InProcessBeat(app, schedule={
        "price": {"task": "billing.tasks.price_finished_requests", "schedule": 0.2},
        "roll": {"task": "billing.tasks.roll_up_usage", "schedule": 0.2},
    })
    beat.start()
    try:
        wait_until(lambda: UsageRollup.objects.filter(api_key=key.api_key).exists(), timeout=20)
    finally:
        beat.stop()
    assert RequestRecord.objects.get(pk=record.pk).priced_at is not None
    assert beat.runs["price"] >= 1 and beat.runs["roll"] >= 1
    assert not beat.is_alive()


def test_the_default_schedule_has_every_periodic_task():
    from django.conf import settings

    tasks = {spec["task"] for spec in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"billing.tasks.price_finished_requests", "billing.tasks.roll_up_usage",
            "billing.tasks.generate_monthly_statements", "billing.tasks.deliver_due_alerts"} <= tasks
