"""Cost of one request: the single formula every path (response `usage.cost`, the Celery
charge, statements) uses, so they can never disagree.

    input × in + output × out + cache_write_5m × m5·in + cache_write_1h × m1h·in + cache_read × mr·in

with prices per 1M tokens. Decimal throughout; the result is exact to 1e-10 USD.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from operator import attrgetter
from typing import Protocol, TypeVar

from .tokens import TokenCounts

MTOK = Decimal(1_000_000)
COST_QUANTUM = Decimal("1e-10")  # also the integer unit of the shared limit counters


class PriceTerms(Protocol):
    """A price version: a Price row, or the catalog's snapshot of one (read-only)."""

    @property
    def input_per_mtok(self) -> Decimal: ...
    @property
    def output_per_mtok(self) -> Decimal: ...
    @property
    def cache_write_5m_multiplier(self) -> Decimal: ...
    @property
    def cache_write_1h_multiplier(self) -> Decimal: ...
    @property
    def cache_read_multiplier(self) -> Decimal: ...


class PriceVersion(Protocol):
    @property
    def effective_from(self) -> datetime: ...


V = TypeVar("V", bound=PriceVersion)


def in_force(versions: Sequence[V], when: datetime) -> V | None:
    """The price in force at `when`: the latest version effective at or before it
    (`versions` ascending by effective_from). The one rule, for the catalog's in-memory
    snapshot and for the database's price rows alike."""
    i = bisect_right(versions, when, key=_EFFECTIVE_FROM)
    return versions[i - 1] if i else None


_EFFECTIVE_FROM = attrgetter("effective_from")


def compute_cost(price: PriceTerms, tokens: TokenCounts) -> Decimal:
    rate_in = price.input_per_mtok
    micro_total = (
        tokens.input_tokens * rate_in
        + tokens.output_tokens * price.output_per_mtok
        + tokens.cache_write_5m * rate_in * price.cache_write_5m_multiplier
        + tokens.cache_write_1h * rate_in * price.cache_write_1h_multiplier
        + tokens.cache_read * rate_in * price.cache_read_multiplier
    )
    return (micro_total / MTOK).quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)


def format_usd(amount: Decimal) -> str:
    """Money on the wire: a plain decimal string without exponent or trailing zeros."""
    text = format(amount.normalize(), "f")
    return text if text != "-0" else "0"


def to_units(amount: Decimal) -> int:
    """USD → integer units of 1e-10 USD (rounded up: a bound never shrinks)."""
    return int((amount / COST_QUANTUM).to_integral_value(rounding=ROUND_CEILING))


def from_units(units: int) -> Decimal:
    return Decimal(units) * COST_QUANTUM
