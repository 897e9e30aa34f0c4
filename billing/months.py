"""Billing months, and the day/week/month windows of key spend limits, in
BILLING_TIME_ZONE. Limits, statements, the dashboard and /key all cut months (and limit
windows) here, so a request near midnight on the last day lands in the same month
everywhere."""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
PERIODS = ("daily", "weekly", "monthly")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class BadMonth(ValueError):
    pass


def billing_tz() -> ZoneInfo:
    return ZoneInfo(settings.BILLING_TIME_ZONE)


def billing_month(when: datetime) -> str:
    """The "YYYY-MM" of the month containing `when` (on the gateway's hot path: keep it lean)."""
    return when.astimezone(ZoneInfo(settings.BILLING_TIME_ZONE)).strftime("%Y-%m")


def parse_month(text: str) -> date:
    """"YYYY-MM" → the first day of that month; BadMonth for anything else."""
    m = MONTH_RE.match(text or "")
    if not m:
        raise BadMonth(f"{text!r} is not a month (YYYY-MM)")
    return date(int(m.group(1)), int(m.group(2)), 1)


def month_start(when: datetime | None = None) -> datetime:
    """Start of the month containing `when` (default: now), as an aware datetime."""
    local = (when or timezone.now()).astimezone(billing_tz())
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_bounds(month: str | date) -> tuple[datetime, datetime]:
    """[start, end) of a month, given as "YYYY-MM" or as its first day."""
    if isinstance(month, str):
        month = parse_month(month)
    tz = billing_tz()
    nxt = shift_month(month, 1)
    return datetime(month.year, month.month, 1, tzinfo=tz), datetime(nxt.year, nxt.month, 1, tzinfo=tz)


def current_month(now: datetime | None = None) -> date:
    return month_start(now).date()


def last_closed_month(now: datetime | None = None) -> date:
    return month_start(month_start(now) - timedelta(days=1)).date()


def shift_month(month: date, delta: int) -> date:
    index = month.year * 12 + month.month - 1 + delta
    return date(index // 12, index % 12 + 1, 1)


# --- limit windows ------------------------------------------------------------------------
# A key's spend limit counts spend within a window: a day, an ISO week (Monday to Sunday)
# or a calendar month. A window has an id that names it exactly ("2026-11-29", "2026-W48",
# "2026-11"): the limit counters are keyed on it, and the ledger is read for it when a
# counter is rebuilt.

def limit_window(period: str | None, when: datetime) -> str:
    """The id of the window of `period` (None: monthly) that contains `when`."""
    local = when.astimezone(billing_tz())
    if period == "daily":
        return local.strftime("%Y-%m-%d")
    if period == "weekly":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    if period in (None, "", "monthly"):
        return local.strftime("%Y-%m")
    raise ValueError(f"unknown limit period {period!r}")


def window_bounds(window: str) -> tuple[datetime, datetime]:
    """[start, end) of a window id."""
    tz = billing_tz()
    if m := _DAY.match(window):
        start = datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=tz)
        nxt = start.date() + timedelta(days=1)
    elif m := _WEEK.match(window):
        monday = date.fromisocalendar(int(m[1]), int(m[2]), 1)
        start, nxt = datetime(monday.year, monday.month, monday.day, tzinfo=tz), monday + timedelta(days=7)
    elif _MONTH.match(window):
        return month_bounds(window)
    else:
        raise ValueError(f"not a limit window: {window!r}")
    # built from the calendar date, not start + 24 h: a day with a DST change is 23 or 25 hours
    return start, datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)


def period_of(window: str) -> str:
    if _DAY.match(window):
        return "daily"
    return "weekly" if _WEEK.match(window) else "monthly"
