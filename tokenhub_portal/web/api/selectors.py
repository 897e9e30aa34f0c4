"""The management API's reads. Every money figure comes from billing.selectors (`usage`
over the window asked for, `spend_by_period`, `credit_balances`), the functions the
portal, /api/v1/key and the reports read too, so they all agree; here they are only
labelled for the API (model ids, key hashes) and ordered."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from billing.models import Model
from billing.months import current_month, month_bounds
from billing.selectors import SUMS, credit_balances, usage
from tokenhub_portal.accounts.models import ApiKey, Team

# group_by of /usage → the `usage` group it reads
GROUPS = {"day": "day", "model": "model_id", "key": "api_key_id", "user": "end_user"}


def usage_report(team: Team, group_by: str, start: datetime, end: datetime) -> tuple[list[dict], dict]:
    """(rows, total) of a team's usage in [start, end) grouped by day (billing time zone),
    model, key or end user. Each row: its label fields, requests, errors, tokens by class
    and the exact cost; the total is their sum."""
    column = GROUPS[group_by]
    rows = usage([column], start=start, end=end, team_id=team.pk)
    labels = _labeller(group_by, [r[column] for r in rows])
    out = [{**labels(r[column]), **{f: r[f] for f in SUMS}} for r in rows]
    # days in order; other groups by cost, largest first
    out.sort(key=lambda r: (r.get("day") or "", -r["cost"], -r["requests"],
                            str(r.get("model") or r.get("user") or r.get("key") or "")))
    total = {f: sum((r[f] for r in out), Decimal(0) if f == "cost" else 0) for f in SUMS}
    return out, total


def _labeller(group_by: str, values: list):
    if group_by == "day":
        return lambda day: {"day": day.isoformat() if day else None}
    if group_by == "model":
        names = dict(Model.objects.filter(id__in=[v for v in values if v]).values_list("id", "public_id"))
        return lambda model_id: {"model": names.get(model_id, "(unknown model)") if model_id else None}
    if group_by == "key":
        keys = {k.id: k for k in ApiKey.objects.filter(id__in=values)}

        def key_label(key_id) -> dict:
            key = keys.get(key_id)
            return {"key": key.key_hash if key else None, "key_name": key.name if key else "",
                    "key_label": key.prefix if key else ""}

        return key_label
    return lambda user: {"user": user or ""}


def team_figures(teams: Sequence[Team], now: datetime | None = None) -> list[Team]:
    """Sets `month_spend`, `month_requests` and (prepaid teams) `credit_balance` on each team."""
    now = now or timezone.now()
    if not teams:
        return []
    start, end = month_bounds(current_month(now))
    month = {r["team_id"]: r
             for r in usage(["team_id"], start=start, end=end, now=now, team_id__in=[t.pk for t in teams])}
    prepaid = [t.pk for t in teams if t.prepaid]
    balances = credit_balances(prepaid, now) if prepaid else {}
    for team in teams:
        row = month.get(team.pk)
        team.month_spend = row["cost"] if row else Decimal(0)
        team.month_requests = row["requests"] if row else 0
        team.credit_balance = balances.get(team.pk)
    return list(teams)
