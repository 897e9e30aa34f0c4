"""Hourly usage roll-ups: (team, key, model, UTC hour) → request/error counts, tokens by
class and cost, folded from the ledger (every finished request has exactly one Charge,
zero for errors, see billing.services.charge_request).

Idempotent by construction: a run finds the hours touched by charges created since the
watermark (minus an overlap for transactions that committed late), deletes those hours'
roll-ups and re-inserts them recomputed from scratch, all in one transaction that holds
the RollupState row lock. Running it twice or concurrently never double counts: the
second run waits for the lock, then recomputes the same hours to the same numbers.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from .models import Charge, RollupState, UsageRollup
from .tokens import COLUMNS

HOUR = timedelta(hours=1)
STATE_NAME = "usage"
# Charges are stamped `created` in the worker before their transaction commits; a run
# looks this far behind its watermark so a slow commit is never missed.
OVERLAP = timedelta(minutes=5)


def summed(qs: QuerySet, group: list[str], aggregates: dict, money: str, money_alias: str = "cost") -> list[dict]:
    """GROUP BY `group` with integer `aggregates` in SQL and the `money` column summed
    exactly. PostgreSQL sums NUMERIC exactly; SQLite stores decimals as REAL, so there
    each row is read back as its exact Decimal and summed in Python."""
    if connection.vendor != "sqlite":
        return list(qs.values(*group).annotate(**aggregates, **{money_alias: Sum(money)}).order_by())
    rows = {tuple(r[g] for g in group): r for r in qs.values(*group).annotate(**aggregates).order_by()}
    for row in rows.values():
        row[money_alias] = Decimal(0)
    for values in qs.values_list(*group, money).order_by().iterator(chunk_size=5000):
        rows[values[:-1]][money_alias] += values[-1] or Decimal(0)
    return list(rows.values())


def summed_total(qs: QuerySet, aggregates: dict, money: str, money_alias: str = "cost") -> dict:
    """Like `summed` without grouping: one dict of totals (zeros when empty)."""
    if connection.vendor != "sqlite":
        row = qs.aggregate(**aggregates, **{money_alias: Sum(money)})
    else:
        row = qs.aggregate(**aggregates)
        row[money_alias] = sum((v or Decimal(0) for v in qs.values_list(money, flat=True).iterator(chunk_size=5000)),
                               Decimal(0))
    return {k: (v if v is not None else (Decimal(0) if k == money_alias else 0)) for k, v in row.items()}


def ledger_aggregates() -> dict:
    """Aggregates over Charges (joined to their request records)."""
    return {
        "requests": Count("id"),
        "errors": Count("id", filter=Q(request__status="error")),
        **{f: Sum(f"request__{f}") for f in COLUMNS},
    }


def rollup_aggregates() -> dict:
    """The same aggregates over UsageRollup rows."""
    return {"requests": Sum("requests"), "errors": Sum("errors"), **{f: Sum(f) for f in COLUMNS}}


def _runs(hours: set[datetime]) -> list[tuple[datetime, datetime]]:
    """Contiguous [start, end) ranges covering the given hour starts."""
    runs: list[tuple[datetime, datetime]] = []
    for hour in sorted(hours):
        if runs and runs[-1][1] == hour:
            runs[-1] = (runs[-1][0], hour + HOUR)
        else:
            runs.append((hour, hour + HOUR))
    return runs


def recompute_range(start: datetime, end: datetime) -> int:
    """Replaces the roll-ups of the hours in [start, end) (hour-aligned, UTC) with sums
    recomputed from the ledger. Call inside a transaction. Returns rows written."""
    UsageRollup.objects.filter(hour__gte=start, hour__lt=end).delete()
    charges = (Charge.objects.filter(occurred_at__gte=start, occurred_at__lt=end)
               .annotate(bucket=TruncHour("occurred_at", tzinfo=UTC)))
    rows = summed(charges, ["team_id", "api_key_id", "model_id", "bucket"], ledger_aggregates(), "amount")
    UsageRollup.objects.bulk_create(
        (UsageRollup(team_id=r["team_id"], api_key_id=r["api_key_id"], model_id=r["model_id"], hour=r["bucket"],
                     requests=r["requests"], errors=r["errors"], cost=r["cost"] or Decimal(0),
                     **{f: r[f] or 0 for f in COLUMNS})
         for r in rows),
        batch_size=2000,
    )
    return len(rows)


def _hour_floor(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def roll_up() -> int:
    """Folds charges created since the watermark into UsageRollup. Returns the number
    of hours recomputed. Safe to run concurrently and repeatedly."""
    RollupState.objects.get_or_create(name=STATE_NAME)
    with transaction.atomic():
        state = RollupState.objects.select_for_update().get(name=STATE_NAME)
        now = timezone.now()
        changed = Charge.objects.all()
        if state.watermark is not None:
            changed = changed.filter(created__gte=state.watermark - OVERLAP)
        hours = {_hour_floor(h) for h in changed.annotate(bucket=TruncHour("occurred_at", tzinfo=UTC))
                 .values_list("bucket", flat=True).distinct().order_by()}
        for start, end in _runs(hours):
            recompute_range(start, end)
        state.watermark = now
        state.save(update_fields=["watermark", "updated"])
    return len(hours)


def rebuild(since: datetime | None = None) -> int:
    """Recomputes every roll-up (or those from `since` on) from the ledger; for repairs
    and after bulk loads. Returns rows written."""
    with transaction.atomic():
        RollupState.objects.get_or_create(name=STATE_NAME)
        state = RollupState.objects.select_for_update().get(name=STATE_NAME)
        now = timezone.now()
        first = since or Charge.objects.order_by("occurred_at").values_list("occurred_at", flat=True).first()
        written = 0
        if first is not None:
            written = recompute_range(_hour_floor(first), _hour_floor(now) + HOUR * 2)
            if since is None:
                UsageRollup.objects.filter(hour__lt=_hour_floor(first)).delete()
        state.watermark = now
        state.save(update_fields=["watermark", "updated"])
    return written


def totals_by(qs: QuerySet, group: list[str]) -> list[dict]:
    """Sums of roll-up rows grouped by `group` (money exact)."""
    return summed(qs, group, rollup_aggregates(), "cost")
