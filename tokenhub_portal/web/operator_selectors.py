"""Operator console reads: every team at once. Callers are staff (checked by the views);
the numbers are live like the team dashboards (billing.usage)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal

from django.db.models import Count, Q
from django.utils import timezone

from billing.models import CreditEntry
from billing.months import billing_tz, month_start
from billing.rollups import summed
from billing.selectors import credit_balance, usage, usage_by, usage_total
from tokenhub_portal.accounts.models import ApiKey, Team

from .selectors import daily_series, last_days, model_names


@dataclass
class Overview:
    today: dict
    month: dict
    month_start: date
    teams: int
    suspended: int
    days: list[date]
    by_team: list[dict]
    by_model: list[dict]
    chart_total: Decimal


def overview(now: datetime | None = None) -> Overview:
    now = now or timezone.now()
    tz = billing_tz()
    today = datetime.combine(now.astimezone(tz).date(), time.min, tzinfo=tz)
    start = month_start(now)
    day_list, since = last_days(now)
    rows = usage(["day", "team_id", "model_id"], start=since, now=now)
    teams = dict(Team.objects.filter(id__in={r["team_id"] for r in rows}).values_list("id", "name"))
    by_team, total = daily_series(rows, "team_id", teams, day_list, label="team")
    by_model, _ = daily_series(rows, "model_id", model_names(), day_list)
    counts = Team.objects.aggregate(teams=Count("id"), suspended=Count("id", filter=Q(suspended=True)))
    return Overview(
        today=usage_total(start=today, now=now), month=usage_total(start=start, now=now), month_start=start.date(),
        teams=counts["teams"], suspended=counts["suspended"], days=day_list, by_team=by_team, by_model=by_model,
        chart_total=total,
    )


@dataclass
class TeamRow:
    team: Team
    month_spend: Decimal
    month_requests: int
    balance: Decimal | None
    keys: int
    status: str


def credit_totals(team_ids: list[int]) -> dict[int, Decimal]:
    rows = summed(CreditEntry.objects.filter(team_id__in=team_ids), ["team_id"], {}, "amount")
    return {r["team_id"]: r["cost"] for r in rows}


def teams_table(query: str = "", now: datetime | None = None, limit: int = 200) -> tuple[list[TeamRow], bool]:
    """Teams (name contains `query`), with budget, prepaid balance, month spend, active
    keys and status; and whether more teams matched than are shown."""
    now = now or timezone.now()
    qs = Team.objects.order_by("name")
    if query:
        qs = qs.filter(name__icontains=query)
    teams = list(qs[: limit + 1])
    more, teams = len(teams) > limit, teams[:limit]
    ids = [t.pk for t in teams]
    month = usage_by("team_id", team_id__in=ids, start=month_start(now), now=now) if ids else {}
    prepaid = [t.pk for t in teams if t.prepaid]
    spent_ever = usage_by("team_id", team_id__in=prepaid, now=now) if prepaid else {}
    credits = credit_totals(prepaid) if prepaid else {}
    keys = dict(ApiKey.objects.filter(team_id__in=ids, revoked_at__isnull=True).values("team_id")
                .annotate(n=Count("id")).values_list("team_id", "n"))
    rows = []
    for t in teams:
        spend = month[t.pk]["cost"] if t.pk in month else Decimal(0)
        balance = None
        if t.prepaid:
            balance = credits.get(t.pk, Decimal(0)) - (spent_ever[t.pk]["cost"] if t.pk in spent_ever else Decimal(0))
        rows.append(TeamRow(
            team=t, month_spend=spend, month_requests=month[t.pk]["requests"] if t.pk in month else 0,
            balance=balance, keys=keys.get(t.pk, 0), status=team_status(t, spend, balance),
        ))
    return rows, more


def team_status(team: Team, month_spend: Decimal, balance: Decimal | None) -> str:
    if team.suspended:
        return "suspended"
    if team.monthly_budget is not None and month_spend >= team.monthly_budget:
        return "over budget"
    if balance is not None and balance <= 0:
        return "no credit"
    return "active"


@dataclass
class TeamDetail:
    row: TeamRow
    credits: list[CreditEntry]


def team_detail(team: Team, now: datetime | None = None) -> TeamDetail:
    now = now or timezone.now()
    start = month_start(now)
    month = usage_total(team_id=team.pk, start=start, now=now)
    balance = None
    if team.prepaid:
        balance = credit_balance(team.pk, now)
    keys = ApiKey.objects.filter(team=team, revoked_at__isnull=True).count()
    row = TeamRow(team=team, month_spend=month["cost"], month_requests=month["requests"], balance=balance, keys=keys,
                  status=team_status(team, month["cost"], balance))
    return TeamDetail(row=row, credits=list(CreditEntry.objects.filter(team=team).select_related("created_by")[:10]))
