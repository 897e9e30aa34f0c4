"""Money for people. Per-token amounts are often far below a cent, so a non-zero amount
is never shown as $0.00: cents from one cent up, two significant digits below it
($0.00033), and the exact ledger value (1e-10 USD) one hover away."""
from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from django.utils.html import format_html

CENT = Decimal("0.01")
LEDGER = Decimal("1e-10")


def to_decimal(value) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _plain(amount: Decimal) -> str:
    """No exponent, no trailing zeros beyond the cents."""
    text = format(amount.normalize(), "f")
    whole, _, fraction = text.partition(".")
    return f"{int(whole):,}.{fraction.ljust(2, '0')}"


def usd_text(value, places: int | None = None) -> str:
    """'$1,234.56', '$0.00033', '-$0.05'; '$0.00' only for zero; '—' for nothing."""
    amount = to_decimal(value)
    if amount is None:
        return "—"
    if amount == 0:
        return "$0.00"
    sign, amount = ("-" if amount < 0 else ""), abs(amount)
    if places is not None:
        rounded = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
        if rounded:
            return f"{sign}${rounded:,}"
    if amount >= CENT:
        return f"{sign}${amount.quantize(CENT, rounding=ROUND_HALF_EVEN):,}"
    # Below a cent: two significant digits.
    quantum = Decimal(1).scaleb(amount.adjusted() - 1)
    return f"{sign}${_plain(amount.quantize(quantum, rounding=ROUND_HALF_EVEN))}"


def exact_text(value) -> str:
    """The ledger's precision, 1e-10 USD, without exponent."""
    amount = to_decimal(value)
    return "—" if amount is None else format(amount.quantize(LEDGER, rounding=ROUND_HALF_EVEN), "f")


def usd_html(value, places: int | None = None) -> str:
    """The readable amount, with the exact one as its tooltip."""
    amount = to_decimal(value)
    if amount is None:
        return "—"
    return format_html('<span class="usd" title="{} USD">{}</span>', exact_text(amount), usd_text(amount, places))
