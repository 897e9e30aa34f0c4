"""Billing months: calendar months in BILLING_TIME_ZONE. Limits, statements, the
dashboard and /key all cut months here, so a request near midnight on the last day
lands in the same month everywhere."""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


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
