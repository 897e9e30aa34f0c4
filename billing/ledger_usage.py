"""Usage read from the ledger for the management API: spend per key and limit period,
and usage grouped by day, model, key or end user. Every figure is a sum of Charges (exact
Decimals), so totals equal the charges to the 1e-10 USD."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count, QuerySet
from django.db.models.functions import TruncDate

from tokenhub_portal.accounts.models import ApiKey

from .models import Charge, CreditEntry, Model, RequestRecord
from .months import PERIODS, limit_window, window_bounds
from .rollups import ledger_aggregates, summed, summed_total
from .selectors import unpriced_cost
from .tokens import COLUMNS

GROUPS = {"day": "day", "model": "model_id", "key": "api_key_id", "user": "request__end_user"}


def key_spend(key_ids: list[int], now: datetime) -> dict[int, dict[str, Decimal]]:
    """{key id: {"daily", "weekly", "monthly": spend in the window containing `now`}}, as
    the gateway's limits count it: charges plus finished requests still being priced."""
    starts = {p: window_bounds(limit_window(p, now))[0] for p in PERIODS}
    earliest = min(starts.values())
    out: dict[int, dict[str, Decimal]] = {k: dict.fromkeys(PERIODS, Decimal(0)) for k in key_ids}
    if not key_ids:
        return out
    rows = Charge.objects.filter(api_key_id__in=key_ids, occurred_at__gte=earliest)
    # One grouped query per window start (at most three; windows often share a start).
    for start in set(starts.values()):
        for row in summed(rows.filter(occurred_at__gte=start), ["api_key_id"], {}, "amount"):
            for period, period_start in starts.items():
                if period_start == start:
                    out[row["api_key_id"]][period] += row["cost"] or Decimal(0)
    pending = RequestRecord.objects.filter(api_key_id__in=key_ids, created__gte=earliest, priced_at__isnull=True)
    for record in pending.filter(status__in=("success", "cancelled"), model__isnull=False):
        cost = unpriced_cost(RequestRecord.objects.filter(pk=record.pk))
        for period, start in starts.items():
            if record.created >= start:
                out[record.api_key_id][period] += cost
    return out


def _row(row: dict) -> dict:
    return {"requests": row.get("requests") or 0, "errors": row.get("errors") or 0,
            **{f: row.get(f) or 0 for f in COLUMNS}, "cost": row.get("cost") or Decimal(0)}


def usage(charges: QuerySet, group_by: str) -> tuple[list[dict], dict]:
    """(rows, total) of `charges` grouped by day (billing time zone), model, key or user.
    Each row: the group's label fields, requests, errors, tokens by class, exact cost."""
    column = GROUPS[group_by]
    if group_by == "day":
        charges = charges.annotate(day=TruncDate("occurred_at", tzinfo=ZoneInfo(settings.BILLING_TIME_ZONE)))
    rows = summed(charges, [column], ledger_aggregates(), "amount")
    total = _row(summed_total(charges, ledger_aggregates(), "amount"))
    out = []
    if group_by == "model":
        names = dict(Model.objects.values_list("id", "public_id"))
    if group_by == "key":
        keys = {k.id: k for k in ApiKey.objects.filter(id__in=[r[column] for r in rows])}
    for row in rows:
        value = row[column]
        if group_by == "day":
            label = {"day": value.isoformat() if value else None}
        elif group_by == "model":
            label = {"model": names.get(value, "(unknown model)") if value else None}
        elif group_by == "key":
            key = keys.get(value)
            label = {"key": key.key_hash if key else None, "key_name": key.name if key else "",
                     "key_label": key.prefix if key else ""}
        else:
            label = {"user": value or ""}
        out.append({**label, **_row(row)})
    # days in order; other groups by cost, largest first
    out.sort(key=lambda r: (r.get("day") or "", -r["cost"], -r["requests"],
                            str(r.get("model") or r.get("user") or r.get("key") or "")))
    return out, total


def team_money(team_ids: list[int], month_start: datetime) -> dict[int, dict]:
    """{team id: {"month_spend", "month_requests", "spent_total"}} from the ledger: this
    month's charges, and all charges (a prepaid balance is credits minus all spend)."""
    out = {t: {"month_spend": Decimal(0), "month_requests": 0, "spent_total": Decimal(0), "credits": Decimal(0)}
           for t in team_ids}
    if not team_ids:
        return out
    charges = Charge.objects.filter(team_id__in=team_ids)
    for row in summed(charges.filter(occurred_at__gte=month_start), ["team_id"], {"requests": Count("id")}, "amount"):
        out[row["team_id"]].update(month_spend=row["cost"] or Decimal(0), month_requests=row["requests"] or 0)
    for row in summed(charges, ["team_id"], {}, "amount"):
        out[row["team_id"]]["spent_total"] = row["cost"] or Decimal(0)
    for row in summed(CreditEntry.objects.filter(team_id__in=team_ids), ["team_id"], {}, "amount"):
        out[row["team_id"]]["credits"] = row["cost"] or Decimal(0)
    return out
