from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from .models import Charge, Price


def price_at(model_id: int, when: datetime) -> Price | None:
    """The price version in force for a model at a moment (latest effective_from ≤ when)."""
    return (
        Price.objects.filter(model_id=model_id, effective_from__lte=when)
        .order_by("-effective_from")
        .first()
    )


def month_start(when: datetime | None = None) -> datetime:
    """Start of the calendar month containing `when`, in the billing time zone."""
    tz = ZoneInfo(settings.BILLING_TIME_ZONE)
    local = (when or timezone.now()).astimezone(tz)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def spend_since(since: datetime, *, team_id: int | None = None, api_key_id: int | None = None) -> Decimal:
    qs = Charge.objects.filter(occurred_at__gte=since)
    if team_id is not None:
        qs = qs.filter(team_id=team_id)
    if api_key_id is not None:
        qs = qs.filter(api_key_id=api_key_id)
    return qs.aggregate(total=Sum("amount"))["total"] or Decimal(0)
