from decimal import ROUND_HALF_EVEN, Decimal

from django import template

register = template.Library()


@register.filter
def usd(value, places=None):
    """Money for people: $1,234.56; sub-cent amounts keep enough digits to be non-zero."""
    if value is None or value == "":
        return "—"
    value = Decimal(value)
    if places not in (None, ""):
        q = Decimal(1).scaleb(-int(places))
        return f"${value.quantize(q, rounding=ROUND_HALF_EVEN):,}"
    if value == 0:
        return "$0.00"
    if abs(value) >= Decimal("0.01"):
        return f"${value.quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN):,}"
    return f"${value.quantize(Decimal('0.000001'), rounding=ROUND_HALF_EVEN):f}".rstrip("0")


@register.filter
def exact(value):
    """The full ledger precision (1e-10 USD), no exponent."""
    return format(Decimal(value).quantize(Decimal("1e-10")), "f") if value is not None else "—"


@register.filter
def num(value):
    return f"{value:,}" if isinstance(value, int) else value
