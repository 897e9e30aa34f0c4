"""Portal reads. Everything is scoped by a Team that the caller got from the user's own
Membership (see `current_membership`); nothing here takes a team id from the client."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Q
from django.utils import timezone

from billing.models import BudgetAlert, Charge, Model, MonthlyStatement, RequestRecord, UsageRollup
from billing.months import billing_tz, current_month, limit_window, month_start, window_bounds
from billing.selectors import credit_balance, live_cutoff, spend_by_period, usage, usage_total
from tokenhub_portal.accounts.models import ApiKey, AuditEntry, Invitation, Membership, Team

SESSION_TEAM = "team_id"
# A staff user looking at another team's portal pages (read-only), by team id.
SESSION_OPERATOR_TEAM = "operator_team_id"


# --- teams ---------------------------------------------------------------------------------

def memberships_of(user) -> list[Membership]:
    if not user.is_authenticated:
        return []
    return list(Membership.objects.filter(user=user).select_related("team").order_by("team__name"))


def current_membership(user, session) -> Membership | None:
    """The user's membership for the team selected in the session, else their first. A
    staff user viewing a team from the operator console gets a read-only stand-in."""
    if not user.is_authenticated:
        return None
    if user.is_staff and session.get(SESSION_OPERATOR_TEAM):
        team = Team.objects.filter(pk=session[SESSION_OPERATOR_TEAM]).first()
        if team is not None:
            stand_in = Membership(team=team, user=user, role=Membership.Role.MEMBER)
            stand_in.operator_view = True
            return stand_in
        session.pop(SESSION_OPERATOR_TEAM, None)
    qs = Membership.objects.filter(user=user).select_related("team", "user")
    wanted = session.get(SESSION_TEAM)
    membership = qs.filter(team_id=wanted).first() if wanted else None
    if membership is None:
        membership = qs.order_by("created", "id").first()
        if membership is not None:
            session[SESSION_TEAM] = membership.team_id
    return membership


def team_members(team: Team) -> list[Membership]:
    return list(team.memberships.select_related("user").order_by("created"))


def open_invitations(team: Team) -> list[Invitation]:
    return [i for i in team.invitations.filter(accepted_at__isnull=True, revoked_at__isnull=True)
            .select_related("invited_by")[:50] if i.pending]


# --- dashboard ------------------------------------------------------------------------------

@dataclass
class Dashboard:
    month: date
    spend: Decimal
    requests: int
    budget: Decimal | None
    budget_remaining: Decimal | None
    budget_used_pct: int | None
    balance: Decimal | None
    days: list[date]
    series: list[dict]        # [{"model": str, "values": [Decimal per day], "total": Decimal}]
    chart_total: Decimal
    top_keys: list[dict]
    recent_errors: list[RequestRecord]


def dashboard(team: Team, now: datetime | None = None) -> Dashboard:
    now = now or timezone.now()
    start = month_start(now)
    month = usage_total(team_id=team.pk, start=start, now=now)  # the money figures: billing.selectors
    spend, requests = month["cost"], month["requests"]
    budget = team.monthly_budget
    remaining = used = None
    if budget is not None:
        remaining = budget - spend
        used = min(100, int(spend * 100 / budget)) if budget > 0 else 100
    balance = credit_balance(team.pk, now) if team.prepaid else None
    days, series, chart_total = daily_spend_by_model(team, now)
    return Dashboard(
        month=start.date(), spend=spend, requests=requests, budget=budget, budget_remaining=remaining,
        budget_used_pct=used, balance=balance, days=days, series=series, chart_total=chart_total,
        top_keys=top_keys(team, start, now), recent_errors=recent_errors(team, now),
    )


def last_days(now: datetime, days: int = 30) -> tuple[list[date], datetime]:
    """The last `days` calendar days in the billing time zone, and when the first began."""
    tz = billing_tz()
    today = now.astimezone(tz).date()
    day_list = [today - timedelta(days=days - 1 - i) for i in range(days)]
    return day_list, datetime.combine(day_list[0], time.min, tzinfo=tz)


def daily_series(rows: list[dict], field: str, names: dict, day_list: list[date], label: str = "model"):
    """Rows grouped by (day, field) → one series of daily values per name, biggest first."""
    index = {d: i for i, d in enumerate(day_list)}
    per_name: dict[str, list[Decimal]] = {}
    for row in rows:
        i = index.get(row["day"])
        if i is None:
            continue
        name = names.get(row[field], "other")
        per_name.setdefault(name, [Decimal(0)] * len(day_list))[i] += row["cost"] or Decimal(0)
    series = [{label: n, "values": v, "total": sum(v, Decimal(0))} for n, v in per_name.items()]
    series.sort(key=lambda s: (-s["total"], s[label]))
    return series, sum((s["total"] for s in series), Decimal(0))


def model_names() -> dict:
    return dict(Model.objects.values_list("id", "public_id"))


def daily_spend_by_model(team: Team, now: datetime, days: int = 30):
    """The chart reads the same live figures as the totals: a call made a moment ago has its bar."""
    day_list, since = last_days(now, days)
    rows = usage(["day", "model_id"], team_id=team.pk, start=since, now=now)
    series, total = daily_series(rows, "model_id", model_names(), day_list)
    return day_list, series, total


def top_keys(team: Team, since: datetime, now: datetime, limit: int = 5) -> list[dict]:
    rows = usage(["api_key_id"], team_id=team.pk, start=since, now=now)
    rows.sort(key=lambda r: (-(r["cost"] or 0), -(r["requests"] or 0)))
    rows = rows[:limit]
    keys = {k.id: k for k in ApiKey.objects.filter(team=team, id__in=[r["api_key_id"] for r in rows])}
    return [{"key": keys[r["api_key_id"]], "cost": r["cost"], "requests": r["requests"]}
            for r in rows if r["api_key_id"] in keys]


def recent_errors(team: Team, now: datetime, limit: int = 10) -> list[RequestRecord]:
    """The latest failed requests. The roll-ups say which hours had errors, so the
    indexed (team, created) scan is bounded to those hours however rare errors are."""
    cutoff = live_cutoff(now)
    error_hours = list(UsageRollup.objects.filter(team=team, errors__gt=0, hour__lt=cutoff)
                       .order_by("-hour").values_list("hour", flat=True).distinct()[:limit])
    since = min([cutoff, *error_hours])
    return list(RequestRecord.objects.filter(team=team, status=RequestRecord.Status.ERROR, created__gte=since)
                .select_related("api_key").order_by("-created")[:limit])


# --- keys --------------------------------------------------------------------------------------

def team_keys(team: Team, now: datetime | None = None) -> list[ApiKey]:
    """The team's keys with this month's spend and, for keys with a spend limit, the spend
    of the limit's current window (day, week or month) and when it resets."""
    now = now or timezone.now()
    keys = list(ApiKey.objects.filter(team=team).select_related("created_by"))
    spend = {r["api_key_id"]: r["cost"] for r in usage(["api_key_id"], team_id=team.pk, start=month_start(now), now=now)}
    limited = [k for k in keys if k.monthly_limit is not None and k.revoked_at is None]
    windows = spend_by_period([k.id for k in limited], now)
    for key in keys:
        key.period_spend = key.period_resets = None
    for key in limited:
        key.period_spend = windows[key.id][key.limit_period]
        key.period_resets = window_bounds(limit_window(key.limit_period, now))[1]
    for key in keys:
        key.month_spend = spend.get(key.id, Decimal(0))
        if key.revoked_at:
            key.status = "revoked"
        elif key.disabled:
            key.status = "disabled"
        elif key.expires_at and key.expires_at <= now:
            key.status = "expired"
        else:
            key.status = "active"
    return keys


def enabled_models() -> list[Model]:
    return list(Model.objects.filter(enabled=True))


# --- request log ---------------------------------------------------------------------------

@dataclass
class LogPage:
    records: list[RequestRecord]
    next_cursor: str | None


def encode_cursor(row) -> str:
    """Where a page ends: a row's (created, id), newest-first order."""
    return f"{row.created.astimezone(UTC).strftime('%Y%m%dT%H%M%S.%f')}_{row.id}"


def decode_cursor(text: str) -> tuple[datetime, int] | None:
    try:
        stamp, _, pk = text.partition("_")
        return datetime.strptime(stamp, "%Y%m%dT%H%M%S.%f").replace(tzinfo=UTC), int(pk)
    except (ValueError, TypeError):
        return None


def keyset_page(qs, cursor: str, page_size: int, *related: str) -> tuple[list, str | None]:
    """One page of ``qs`` newest first (created, id), after ``cursor``: no OFFSET, no COUNT(*)."""
    position = decode_cursor(cursor) if cursor else None
    if position is not None:
        created, pk = position
        qs = qs.filter(Q(created__lt=created) | Q(created=created, id__lt=pk))
    rows = list(qs.select_related(*related).order_by("-created", "-id")[: page_size + 1])
    more = len(rows) > page_size
    rows = rows[:page_size]
    return rows, encode_cursor(rows[-1]) if more and rows else None


def request_log(team: Team, *, api_key: ApiKey | None = None, model: str = "", status: str = "",
                api: str = "", end_user: str = "", date_from: date | None = None, date_to: date | None = None,
                cursor: str = "", page_size: int = 50) -> LogPage:
    """Keyset paging on the (team, -created) index — or (team, end_user, -created) when
    filtering by end user: no OFFSET, no COUNT(*)."""
    qs = RequestRecord.objects.filter(team=team)
    if api_key is not None:
        qs = qs.filter(api_key=api_key)
    if api:
        qs = qs.filter(api=api)
    if end_user:
        qs = qs.filter(end_user=end_user)
    if model:
        qs = qs.filter(model__public_id=model)
    if status:
        qs = qs.filter(status=status)
    tz = billing_tz()
    if date_from:
        qs = qs.filter(created__gte=datetime.combine(date_from, time.min, tzinfo=tz))
    if date_to:
        qs = qs.filter(created__lt=datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=tz))
    return LogPage(*keyset_page(qs, cursor, page_size, "api_key"))


def request_detail(team: Team, generation_id: str) -> tuple[RequestRecord, Charge | None] | None:
    record = (RequestRecord.objects.filter(team=team, generation_id=generation_id)
              .select_related("api_key", "model").first())
    if record is None:
        return None
    charge = Charge.objects.filter(request=record).select_related("price").first()
    return record, charge


# --- reports -----------------------------------------------------------------------------

def monthly_totals(team: Team, limit: int = 24) -> list[dict]:
    """Per month (billing time zone): requests and cost (billing.selectors.usage), and
    whether a final statement is stored; newest first, the current month always included."""
    months: dict[date, dict] = {}
    for row in usage(["month"], team_id=team.pk):
        months[row["month"]] = {"month": row["month"], "requests": row["requests"], "cost": row["cost"]}
    months.setdefault(current_month(), {"month": current_month(), "requests": 0, "cost": Decimal(0)})
    stored = {s.month: s for s in MonthlyStatement.objects.filter(team=team)}
    for m, s in stored.items():
        months.setdefault(m, {"month": m, "requests": s.requests, "cost": s.total})
    out = sorted(months.values(), key=lambda r: r["month"], reverse=True)[:limit]
    for row in out:
        row["statement"] = stored.get(row["month"])
    return out


# --- audit log and alerts ----------------------------------------------------------------------

@dataclass
class AuditPage:
    entries: list[AuditEntry]
    next_cursor: str | None


def audit_log(team: Team | None, *, action: str = "", source: str = "", cursor: str = "",
              page_size: int = 50) -> AuditPage:
    """A team's audit entries (team admins), or everyone's with team=None (staff only:
    callers check). Keyset paging, newest first."""
    qs = AuditEntry.objects.all() if team is None else AuditEntry.objects.filter(team=team)
    if action:
        qs = qs.filter(action__startswith=action)
    if source:
        qs = qs.filter(source=source)
    return AuditPage(*keyset_page(qs, cursor, page_size, "team"))


def recent_alerts(team: Team, limit: int = 10) -> list[BudgetAlert]:
    return list(BudgetAlert.objects.filter(team=team).select_related("api_key").order_by("-created")[:limit])
