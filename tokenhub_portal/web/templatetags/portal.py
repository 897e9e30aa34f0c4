from django import template

from ..money import exact_text, usd_html

register = template.Library()


@register.filter
def usd(value, places=None):
    """Money for people, everywhere in the portal and statements: never a non-zero amount
    as $0.00, the exact ledger value on hover (see web.money)."""
    try:
        places = int(places) if places not in (None, "") else None
    except (TypeError, ValueError):
        places = None
    return usd_html(value, places)


@register.filter
def exact(value):
    """The full ledger precision (1e-10 USD), no exponent."""
    return exact_text(value)


@register.filter
def num(value):
    return f"{value:,}" if isinstance(value, int) else value


@register.filter
def minutes(delta) -> int:
    """A timedelta as whole minutes, rounded up (a lockout's remaining wait)."""
    return -(-int(delta.total_seconds()) // 60) if delta else 0
