from __future__ import annotations

from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import Charge, CreditEntry, RequestRecord
from .selectors import PriceBook, charge_amount, price_at


def _new_charge(record: RequestRecord, price) -> Charge:
    return Charge(
        request=record, team_id=record.team_id, api_key_id=record.api_key_id, model_id=record.model_id,
        price=price, amount=charge_amount(record, price), estimated=record.output_estimated,
        occurred_at=record.created,
    )


def charge_request(record_id: int) -> Charge:
    """Write the one Charge of a finished request. Idempotent: running it again, or
    twice at once, returns the existing charge instead of making another."""
    with transaction.atomic():
        record = RequestRecord.objects.select_for_update().get(pk=record_id)
        charge = Charge.objects.filter(request_id=record_id).first()
        if charge is None:
            price = price_at(record.model_id, record.created) if record.model_id else None
            try:
                with transaction.atomic():
                    charge = _new_charge(record, price)
                    charge.save()
            except IntegrityError:  # another worker won the race on a backend without row locks
                charge = Charge.objects.get(request_id=record_id)
        if record.priced_at is None:
            record.priced_at = timezone.now()
            record.save(update_fields=["priced_at"])
        return charge


def price_pending(limit: int = 500, seen=None) -> int:
    """Price a batch of finished, unpriced requests. Rows are claimed with SKIP LOCKED, so
    runs that overlap split the work instead of repeating it, and the unique charge per
    request makes a repeat harmless anyway. Returns how many were priced; `seen` (a
    billing.alerts.Priced) is told about each record, for the budget alerts."""
    with transaction.atomic():
        records = list(
            RequestRecord.objects.select_for_update(skip_locked=True)
            .filter(priced_at__isnull=True).order_by("created")[:limit]
        )
        if not records:
            return 0
        ids = [r.pk for r in records]
        charged = set(Charge.objects.filter(request_id__in=ids).values_list("request_id", flat=True))
        prices = PriceBook({r.model_id for r in records if r.model_id})
        new = [_new_charge(r, prices.at(r.model_id, r.created)) for r in records if r.pk not in charged]
        Charge.objects.bulk_create(new)
        RequestRecord.objects.filter(pk__in=ids).update(priced_at=timezone.now())
    if seen is not None:
        amounts = {c.request_id: c.amount for c in new}
        for record in records:
            seen.add(record, amounts.get(record.pk, Decimal(0)))
    return len(records)


def add_credit(team, amount: Decimal, *, note: str = "", created_by=None, kind: str = "topup"):
    """Append to a team's prepaid ledger (negative amounts are adjustments)."""
    if not amount.is_finite() or amount == 0:
        raise ValueError("amount must be a non-zero number of USD")
    return CreditEntry.objects.create(team=team, amount=amount, note=note, created_by=created_by,
                                      kind=kind if amount > 0 else CreditEntry.Kind.ADJUSTMENT)
