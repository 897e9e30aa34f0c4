from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from proxy.models import RequestRecord

from .models import Charge
from .pricing import compute_cost
from .selectors import price_at


def charge_request(record_id: int) -> Charge:
    """Write the one Charge of a finished request. Idempotent: running it again, or
    twice at once, returns the existing charge instead of making another."""
    with transaction.atomic():
        record = RequestRecord.objects.select_for_update().get(pk=record_id)
        existing = Charge.objects.filter(request_id=record_id).first()
        if existing is not None:
            if record.priced_at is None:
                record.priced_at = timezone.now()
                record.save(update_fields=["priced_at"])
            return existing
        price = price_at(record.model_id, record.created) if record.model_id else None
        if record.billable and price is not None:
            amount = compute_cost(
                price,
                input_tokens=record.input_tokens,
                output_tokens=record.output_tokens,
                cache_write_5m=record.cache_write_5m_tokens,
                cache_write_1h=record.cache_write_1h_tokens,
                cache_read=record.cache_read_tokens,
            )
        else:
            amount = Decimal(0)
        try:
            with transaction.atomic():
                charge = Charge.objects.create(
                    request=record, team_id=record.team_id, api_key_id=record.api_key_id,
                    model_id=record.model_id, price=price, amount=amount,
                    estimated=record.output_estimated, occurred_at=record.created,
                )
        except IntegrityError:  # another worker won the race on a backend without row locks
            charge = Charge.objects.get(request_id=record_id)
        record.priced_at = timezone.now()
        record.save(update_fields=["priced_at"])
        return charge


def unpriced_request_ids(older_than_seconds: int, limit: int = 1000) -> list[int]:
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        RequestRecord.objects.filter(priced_at__isnull=True, created__lte=cutoff)
        .order_by("created")
        .values_list("pk", flat=True)[:limit]
    )


def add_credit(team, amount: Decimal, *, note: str = "", created_by=None, kind: str = "topup"):
    """Append to a team's prepaid ledger (negative amounts are adjustments)."""
    from .models import CreditEntry

    if not amount.is_finite() or amount == 0:
        raise ValueError("amount must be a non-zero number of USD")
    return CreditEntry.objects.create(team=team, amount=amount, note=note, created_by=created_by,
                                      kind=kind if amount > 0 else CreditEntry.Kind.ADJUSTMENT)
