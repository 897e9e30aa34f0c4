"""Exact cost arithmetic (Decimal equality, no tolerance) and the charge pipeline."""
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing.models import Charge, Model, Price
from billing.pricing import compute_cost
from billing.services import charge_request, price_pending
from billing.tasks import price_finished_requests
from billing.tokens import TokenCounts

from .conftest import run_concurrently

pytestmark = pytest.mark.django_db


def seed_price(public_id: str) -> Price:
    return Price.objects.filter(model__public_id=public_id).latest("effective_from")


@pytest.mark.parametrize(
    "model, tokens, expected",
    [
        # 1000×3 + 500×15 + 2000×3.75 + 1000×6 + 10000×0.3 = 27000 µ$
        ("claude-sonnet-4-6",
         dict(input_tokens=1000, output_tokens=500, cache_write_5m=2000, cache_write_1h=1000, cache_read=10000),
         Decimal("0.027")),
        # 1234×0.8 + 567×4 + 890×1.0 + 12×1.6 + 34567×0.08 = 6929.76 µ$
        ("claude-3-5-haiku-latest",
         dict(input_tokens=1234, output_tokens=567, cache_write_5m=890, cache_write_1h=12, cache_read=34567),
         Decimal("0.00692976")),
        # 1×15 + 1×75 + 3×18.75 + 2×30 + 1×1.5 = 207.75 µ$
        ("claude-4-opus",
         dict(input_tokens=1, output_tokens=1, cache_write_5m=3, cache_write_1h=2, cache_read=1),
         Decimal("0.00020775")),
        # A single cache-read token of the cheapest model: 0.08 µ$ = 8e-8 USD
        ("claude-3-5-haiku-latest", dict(input_tokens=0, output_tokens=0, cache_read=1), Decimal("0.00000008")),
    ],
)
def test_exact_cost(seeded, model, tokens, expected):
    assert compute_cost(seed_price(model), TokenCounts(**tokens)) == expected


def test_cache_classes_are_never_counted_twice(seeded):
    price = seed_price("claude-sonnet-4-6")
    plain = compute_cost(price, TokenCounts(input_tokens=1000, output_tokens=0))
    cached = compute_cost(price, TokenCounts(input_tokens=1000, output_tokens=0, cache_read=1000))
    # 1000 read tokens add exactly 10% of their plain price, nothing more.
    assert cached - plain == plain / 10


def test_charge_uses_price_in_force_and_repricing_leaves_past_charges(make_key, make_record):
    key = make_key()
    t0 = datetime.now(UTC) - timedelta(days=2)
    early = make_record(key, created=t0, input_tokens=1_000_000, output_tokens=0)
    first = charge_request(early.pk)
    assert first.amount == Decimal("3")
    model = Model.objects.get(public_id="claude-sonnet-4-6")
    new_price = Price.objects.create(
        model=model, effective_from=t0 + timedelta(days=1), input_per_mtok=Decimal("2.5"),
        output_per_mtok=Decimal("12.5"),
    )
    late = make_record(key, input_tokens=1_000_000, output_tokens=0)
    second = charge_request(late.pk)
    assert second.amount == Decimal("2.5") and second.price == new_price
    first.refresh_from_db()
    assert first.amount == Decimal("3") and first.price != new_price
    # pricing the early request again changes nothing
    assert charge_request(early.pk).amount == Decimal("3")


def test_duplicated_task_makes_one_charge(make_key, make_record):
    record = make_record(make_key(), input_tokens=10, output_tokens=20)
    charge_request(record.pk)
    assert price_finished_requests.apply().get() == 0  # already priced: nothing to claim
    charge_request(record.pk)
    assert Charge.objects.filter(request=record).count() == 1
    record.refresh_from_db()
    assert record.priced_at is not None


def test_periodic_task_prices_every_finished_request_once(make_key, make_record):
    key = make_key()
    old = make_record(key, created=datetime.now(UTC) - timedelta(days=3), input_tokens=100, output_tokens=100)
    fresh = make_record(key, input_tokens=1000, output_tokens=0, cache_read_tokens=1000)
    failed = make_record(key, status="error", input_tokens=5, output_tokens=0)
    assert price_finished_requests.apply().get() == 3
    assert Charge.objects.get(request=old).amount == Decimal("0.0018")
    assert Charge.objects.get(request=fresh).amount == Decimal("0.0033")
    assert Charge.objects.get(request=failed).amount == 0
    assert price_finished_requests.apply().get() == 0
    assert Charge.objects.count() == 3


def test_bulk_pricing_uses_the_price_version_in_force(make_key, make_record):
    key = make_key()
    t0 = datetime.now(UTC) - timedelta(days=2)
    early = make_record(key, created=t0, input_tokens=1_000_000, output_tokens=0)
    Price.objects.create(model=Model.objects.get(public_id="claude-sonnet-4-6"), effective_from=t0 + timedelta(days=1),
                         input_per_mtok=Decimal("2"), output_per_mtok=Decimal("10"))
    late = make_record(key, input_tokens=1_000_000, output_tokens=0)
    assert price_pending() == 2
    assert Charge.objects.get(request=early).amount == Decimal("3")
    assert Charge.objects.get(request=late).amount == Decimal("2")


def test_failed_request_costs_zero(make_key, make_record):
    record = make_record(make_key(), status="error", input_tokens=500, output_tokens=0)
    charge = charge_request(record.pk)
    assert charge.amount == Decimal(0)


def test_cancelled_stream_is_billed_and_flagged_estimated(make_key, make_record):
    record = make_record(make_key(), status="cancelled", input_tokens=1000, output_tokens=10, output_estimated=True)
    charge = charge_request(record.pk)
    assert charge.amount == Decimal("0.00315") and charge.estimated


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_pricing_makes_one_charge(seeded, make_key, make_record):
    """Workers pricing the same request at the same moment, one-by-one and in bulk."""
    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("needs a server database for real concurrent transactions (runs in CI on PostgreSQL)")
    record = make_record(make_key(), input_tokens=1000, output_tokens=1000)

    def price_twice():
        charge_request(record.pk)
        price_pending()

    run_concurrently(price_twice)
    assert Charge.objects.filter(request=record).count() == 1
