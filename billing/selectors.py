"""Billing reads: the price in force, the money figures every page and endpoint shows
(spend of a key or team, a team's credit balance), and the exact ledger behind the
gateway's limit counters."""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.db.models.functions import TruncDate, TruncMonth
from django.utils import timezone

from .models import Charge, CreditEntry, Model, Price, RequestRecord, RollupState, UsageRollup
from .months import PERIODS, billing_tz, current_month, limit_window, month_start, window_bounds
from .pricing import compute_cost, in_force, to_units
from .rollups import HOUR, ledger_aggregates, rollup_aggregates, summed, summed_total
from .rollups import OVERLAP as ROLLUP_OVERLAP
from .rollups import STATE_NAME as ROLLUP_STATE
from .tokens import COLUMNS

# --- the price in force ----------------------------------------------------------------------

class PriceBook:
    """The price versions of some models, read in one query, for looking up the one in
    force at any moment (the same rule as the gateway's catalog: billing.pricing.in_force)."""

    def __init__(self, model_ids: Iterable[int]) -> None:
        self._versions: dict[int, list[Price]] = {}
        for price in Price.objects.filter(model_id__in=set(model_ids)).order_by("effective_from"):
            self._versions.setdefault(price.model_id, []).append(price)

    def at(self, model_id: int | None, when: datetime) -> Price | None:
        return in_force(self._versions.get(model_id, ()), when) if model_id is not None else None


def price_at(model_id: int, when: datetime) -> Price | None:
    """The price version in force for a model at a moment (latest effective_from ≤ when)."""
    return PriceBook([model_id]).at(model_id, when)


def charge_amount(record: RequestRecord, price: Price | None) -> Decimal:
    """What a finished request is charged at a price: errors and unpriced models cost nothing."""
    if not record.billable or price is None:
        return Decimal(0)
    return compute_cost(price, record.tokens)


# --- money figures: spend and balance, as every page and endpoint shows them -----------------

SUMS = ("requests", "errors", *COLUMNS, "cost")
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def live_cutoff(now: datetime) -> datetime:
    """Roll-ups are trusted for hours before this; later charges are read from the ledger
    (a small indexed range). The beat folds charges every minute, so that is normally the
    hour before this one; when the roll-ups are behind (beat stopped, or never ran) their
    watermark says how far they got, and the ledger is read from there."""
    watermark = RollupState.objects.filter(name=ROLLUP_STATE).values_list("watermark", flat=True).first()
    if watermark is None:
        return EPOCH
    return min(_hour(now) - HOUR, _hour(watermark - ROLLUP_OVERLAP))


def _hour(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@contextlib.contextmanager
def one_snapshot():
    """PostgreSQL: the enclosed reads see one snapshot (REPEATABLE READ, read only), so a
    request priced between two of them is counted exactly once. Elsewhere (SQLite, whose
    transactions would take the write lock), or inside a transaction already, as they are."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield


def usage(group: Sequence[str] = (), *, start: datetime | None = None, end: datetime | None = None,
          now: datetime | None = None, pending: bool = True, **owner) -> list[dict]:
    """Requests, errors, tokens by class and cost of one team or key (`team_id=`,
    `api_key_id=`, or several: `team_id__in=`...; none: every team) in [start, end),
    grouped by `group` ("model_id", "api_key_id", "team_id", "month", "day" — both in the
    billing time zone — or "end_user"): the roll-ups for hours before live_cutoff(now),
    charges since, and finished requests still being priced, at the price in force
    (`pending=False`: settled spend only, as budget alerts count it). Each source holds a
    request at most once, and on PostgreSQL they are read in one snapshot, so nothing
    counts twice or is missed; the dashboard, /key, the keys page, reports, the management
    API, the operator console and budget alerts all read their figures here, so they
    agree. Roll-ups do not keep the end user: grouped by it, every hour is read from the
    charges."""
    now = now or timezone.now()
    rows: dict[tuple, dict] = {}
    with one_snapshot():
        if "end_user" in group:
            since = start
        else:
            cutoff = live_cutoff(now)
            if start is None or start < cutoff:
                rolled = UsageRollup.objects.filter(**owner, hour__lt=cutoff if end is None else min(cutoff, end))
                if start is not None:
                    rolled = rolled.filter(hour__gte=start)
                _fold(rows, group, _sums(_labelled(rolled, "hour", group), group, rollup_aggregates(), "cost"))
            since = cutoff if start is None else max(start, cutoff)
        if end is None or since is None or since < end:
            live = Charge.objects.filter(**owner)
            if since is not None:
                live = live.filter(occurred_at__gte=since)
            if end is not None:
                live = live.filter(occurred_at__lt=end)
            _fold(rows, group, _sums(_labelled(live, "occurred_at", group), group, ledger_aggregates(), "amount"))
        if pending:
            # Read after the charges: without one snapshot (SQLite) a request priced in
            # between is missed for a moment, never counted twice.
            records = RequestRecord.objects.filter(**owner, priced_at__isnull=True)
            if start is not None:
                records = records.filter(created__gte=start)
            if end is not None:
                records = records.filter(created__lt=end)
            _fold(rows, group, _pending_rows(records, group))
    return list(rows.values())


def usage_by(field: str, **kwargs) -> dict:
    """{value of `field`: its totals}, e.g. usage_by("api_key_id", team_id=…, start=…)."""
    return {row[field]: row for row in usage([field], **kwargs)}


def usage_total(**kwargs) -> dict:
    """`usage` without grouping: one dict of totals (zeros when there is nothing)."""
    rows = usage((), **kwargs)
    return rows[0] if rows else _zero({})


def window_spend(window: str, *, now: datetime | None = None, **owner) -> Decimal:
    """Spend of a key or team in a window: a billing month ("2026-11"), or the day or ISO
    week of a key's spend limit ("2026-11-29", "2026-W48"; billing.months.limit_window)."""
    start, end = window_bounds(window)
    return usage_total(start=start, end=end, now=now, **owner)["cost"]


def month_spend(*, month: str | date | None = None, now: datetime | None = None, **owner) -> Decimal:
    """Spend of a key or team in a billing month (default: the current one)."""
    month = month if month is not None else current_month(now)
    return window_spend(month if isinstance(month, str) else f"{month:%Y-%m}", now=now, **owner)


def spend_by_period(key_ids: Sequence[int], now: datetime | None = None) -> dict[int, dict[str, Decimal]]:
    """{key id: {"daily", "weekly", "monthly": spend in its limit window containing `now`}}:
    `usage` over each window's bounds, one grouped read per period for all the keys."""
    now = now or timezone.now()
    out = {key_id: dict.fromkeys(PERIODS, Decimal(0)) for key_id in key_ids}
    if not key_ids:
        return out
    for period in PERIODS:
        start, end = window_bounds(limit_window(period, now))
        for row in usage(["api_key_id"], start=start, end=end, now=now, api_key_id__in=list(key_ids)):
            out[row["api_key_id"]][period] = row["cost"]
    return out


def credit_balance(team_id: int, now: datetime | None = None) -> Decimal:
    """A prepaid team's balance: every credit entry minus everything spent."""
    return credit_balances([team_id], now)[team_id]


def credit_balances(team_ids: Sequence[int], now: datetime | None = None) -> dict[int, Decimal]:
    """`credit_balance` of several teams in one grouped read of each source."""
    credits = {r["team_id"]: r["cost"] or Decimal(0)
               for r in summed(CreditEntry.objects.filter(team_id__in=team_ids), ["team_id"], {}, "amount")}
    spent = {r["team_id"]: r["cost"] for r in usage(["team_id"], now=now, team_id__in=list(team_ids))}
    return {t: credits.get(t, Decimal(0)) - spent.get(t, Decimal(0)) for t in team_ids}


def _sums(qs: QuerySet, group: Sequence[str], aggregates: dict, money: str) -> list[dict]:
    return summed(qs, list(group), aggregates, money) if group else [summed_total(qs, aggregates, money)]


def _labelled(qs: QuerySet, field: str, group: Sequence[str]) -> QuerySet:
    """The computed group labels: month and day of `field` in the billing time zone, and a
    charge's end user (from its request)."""
    if "month" in group:
        qs = qs.annotate(month=TruncMonth(field, tzinfo=billing_tz()))
    if "day" in group:
        qs = qs.annotate(day=TruncDate(field, tzinfo=billing_tz()))
    if "end_user" in group:
        qs = qs.annotate(end_user=F("request__end_user"))
    return qs


def _group_value(name: str, value):
    if name in ("month", "day") and isinstance(value, datetime):  # a date on some backends
        return value.astimezone(billing_tz()).date()
    return value


def _pending_label(record: RequestRecord, name: str):
    if name == "month":
        return month_start(record.created).date()
    if name == "day":
        return record.created.astimezone(billing_tz()).date()
    return getattr(record, name)


def _zero(labels: dict) -> dict:
    return {**labels, **dict.fromkeys(SUMS, 0), "cost": Decimal(0)}


def _fold(rows: dict[tuple, dict], group: Sequence[str], source: Iterable[dict]) -> None:
    for row in source:
        labels = {g: _group_value(g, row[g]) for g in group}
        into = rows.get(tuple(labels.values()))
        if into is None:
            into = rows[tuple(labels.values())] = _zero(labels)
        for f in SUMS:
            into[f] += row[f] or 0


def _pending_rows(records: QuerySet, group: Sequence[str]) -> list[dict]:
    """Finished requests without a charge yet, each as the charge it is about to get."""
    pending = list(records.only("team", "api_key", "model", "status", "created", "end_user", *COLUMNS))
    if not pending:
        return []
    prices = PriceBook({r.model_id for r in pending if r.model_id})
    return [{**{g: _pending_label(r, g) for g in group},
             "requests": 1, "errors": int(r.status == RequestRecord.Status.ERROR), **r.tokens.columns(),
             "cost": charge_amount(r, prices.at(r.model_id, r.created))}
            for r in pending]


# --- the ledger behind the gateway's limit counters -----------------------------------------

def unpriced_cost(records: QuerySet) -> Decimal:
    """What finished, billable, not-yet-charged records will cost (same formula as the charge)."""
    pending = list(records.filter(priced_at__isnull=True, status__in=("success", "cancelled"), model__isnull=False))
    prices = PriceBook({r.model_id for r in pending})
    return sum((charge_amount(r, prices.at(r.model_id, r.created)) for r in pending), Decimal(0))


def ledger_spend(kind: str, owner_id: int, window: str = "", exclude: list[str] | None = None) -> Decimal:
    """The exact ledger behind a limit counter: spend of a key or team within a window (a
    day, ISO week or month id, billing.months.limit_window; charges plus finished requests
    still being priced), or a team's prepaid balance (credits − spend). `exclude`:
    generation ids left out (requests whose limit settle is still to come). The same
    figures as `month_spend`, `window_spend` and `credit_balance`, which read roll-ups where
    they can."""
    owner = {"api_key_id": owner_id} if kind == "key" else {"team_id": owner_id}
    charges = Charge.objects.filter(**owner)
    records = RequestRecord.objects.filter(**owner)
    if exclude:
        charges = charges.exclude(request__generation_id__in=exclude)
        records = records.exclude(generation_id__in=exclude)
    if kind != "credit":
        start, end = window_bounds(window)
        charges = charges.filter(occurred_at__gte=start, occurred_at__lt=end)
        records = records.filter(created__gte=start, created__lt=end)
    spent = summed_total(charges, {}, "amount")["cost"] + unpriced_cost(records)
    if kind != "credit":
        return spent
    return summed_total(CreditEntry.objects.filter(team_id=owner_id), {}, "amount")["cost"] - spent


def ledger_units(kind: str, owner_id: int, window: str = "", exclude: list[str] | None = None) -> int:
    return to_units(ledger_spend(kind, owner_id, window, exclude))


def canonical_model_ids(names: list[str]) -> dict[str, str]:
    """Maps each given id or alias to its model's public id (unknown names are left out)."""
    result = {}
    for model in Model.objects.all():
        for name in [model.public_id, *model.aliases]:
            if name in names:
                result[name] = model.public_id
    return result
