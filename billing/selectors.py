from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from .models import Charge, CreditEntry, Model, Price, RequestRecord
from .pricing import compute_cost, to_units
from .tokens import TokenCounts


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


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """[start, end) of a "YYYY-MM" month in the billing time zone."""
    tz = ZoneInfo(settings.BILLING_TIME_ZONE)
    year, mon = (int(part) for part in month.split("-"))
    start = datetime(year, mon, 1, tzinfo=tz)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=tz)
    return start, end


def unpriced_cost(records) -> Decimal:
    """What finished, billable, not-yet-charged records will cost (same formula as the charge)."""
    total = Decimal(0)
    for r in records.filter(priced_at__isnull=True, status__in=("success", "cancelled"), model__isnull=False):
        price = price_at(r.model_id, r.created)
        if price is not None:
            total += compute_cost(price, TokenCounts.from_columns(r))
    return total


def ledger_spend(kind: str, owner_id: int, month: str = "", exclude: list[str] | None = None) -> Decimal:
    """The ledger's truth behind a limit counter: month spend of a key or team (charges plus
    finished requests still being priced), or a team's prepaid balance (credits − spend).
    `exclude`: generation ids left out (requests whose limit settle is still to come)."""
    owner = {"api_key_id": owner_id} if kind == "key" else {"team_id": owner_id}
    charges = Charge.objects.filter(**owner)
    records = RequestRecord.objects.filter(**owner)
    if exclude:
        charges = charges.exclude(request__generation_id__in=exclude)
        records = records.exclude(generation_id__in=exclude)
    if kind != "credit":
        start, end = month_bounds(month)
        charges = charges.filter(occurred_at__gte=start, occurred_at__lt=end)
        records = records.filter(created__gte=start, created__lt=end)
    spent = (charges.aggregate(total=Sum("amount"))["total"] or Decimal(0)) + unpriced_cost(records)
    if kind != "credit":
        return spent
    credits = CreditEntry.objects.filter(team_id=owner_id).aggregate(total=Sum("amount"))["total"] or Decimal(0)
    return credits - spent


def ledger_units(kind: str, owner_id: int, month: str = "", exclude: list[str] | None = None) -> int:
    return to_units(ledger_spend(kind, owner_id, month, exclude))


def canonical_model_ids(names: list[str]) -> dict[str, str]:
    """Maps each given id or alias to its model's public id (unknown names are left out)."""
    result = {}
    for model in Model.objects.all():
        for name in [model.public_id, *model.aliases]:
            if name in names:
                result[name] = model.public_id
    return result
