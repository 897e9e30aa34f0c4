"""The model table as an in-process snapshot: name/alias → model, with its price
versions. Refreshed every CATALOG_SECONDS so admin edits show up without a restart,
and never queried on the hot path in between."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from billing.models import Model, Price
from billing.pricing import in_force

from . import db
from .errors import GatewayError
from .modelspec import ModelSpec

CATALOG_SECONDS = 30.0
CATALOG_RETRY_SECONDS = 1.0  # while the database is down


@dataclass(frozen=True, slots=True)
class PriceVersion:
    id: int
    effective_from: datetime
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cache_write_5m_multiplier: Decimal
    cache_write_1h_multiplier: Decimal
    cache_read_multiplier: Decimal


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    model_id: int
    spec: ModelSpec
    tier: str
    aliases: tuple[str, ...]
    lifecycle: str
    retired_on: str | None
    successor: str | None
    enabled: bool
    recommended: bool
    created: int
    prices: tuple[PriceVersion, ...]  # ascending effective_from

    def price_at(self, when: datetime) -> PriceVersion | None:
        return in_force(self.prices, when)


@dataclass(frozen=True)
class Catalog:
    entries: tuple[CatalogEntry, ...]
    by_name: dict[str, CatalogEntry]

    def resolve(self, name: str) -> CatalogEntry | None:
        """A model by canonical id or alias; disabled models resolve to None."""
        entry = self.by_name.get(name)
        return entry if entry is not None and entry.enabled else None


def load_catalog() -> Catalog:
    prices: dict[int, list[PriceVersion]] = {}
    for p in Price.objects.order_by("effective_from"):
        prices.setdefault(p.model_id, []).append(
            PriceVersion(p.pk, p.effective_from, p.input_per_mtok, p.output_per_mtok,
                         p.cache_write_5m_multiplier, p.cache_write_1h_multiplier, p.cache_read_multiplier)
        )
    entries = []
    for m in Model.objects.select_related("successor"):
        spec = ModelSpec(
            public_id=m.public_id, upstream_id=m.upstream_id, context_window=m.context_window,
            max_output_tokens=m.max_output_tokens, accepts_sampling=m.accepts_sampling,
            accepts_temperature_with_top_p=m.accepts_temperature_with_top_p,
            structured_output=m.structured_output, prefill=m.prefill, thinking_mode=m.thinking_mode,
        )
        entries.append(CatalogEntry(
            model_id=m.pk, spec=spec, tier=m.tier, aliases=tuple(m.aliases or ()),
            lifecycle=m.lifecycle, retired_on=m.retired_on.isoformat() if m.retired_on else None,
            successor=m.successor.public_id if m.successor else None, enabled=m.enabled,
            recommended=m.recommended, created=int(m.created.timestamp()),
            prices=tuple(prices.get(m.pk, ())),
        ))
    by_name: dict[str, CatalogEntry] = {}
    for e in entries:
        for name in (e.spec.public_id, *e.aliases):
            by_name.setdefault(name, e)
    for e in entries:  # native Messages clients may name a model by its upstream id
        by_name.setdefault(e.spec.upstream_id, e)
    return Catalog(tuple(entries), by_name)


def visible_to(entry: CatalogEntry, key) -> bool:
    return entry.enabled and (not key.allowed_models or entry.spec.public_id in key.allowed_models)


def model_not_found(name: str) -> GatewayError:
    return GatewayError(
        404, f"The model `{name}` does not exist or you do not have access to it.",
        param="model", code="model_not_found",
    )


def successor_hint(entry: CatalogEntry | None) -> str | None:
    """For a model retired upstream: what to use instead (added to upstream's "not found")."""
    if entry is None or not entry.successor:
        return None
    since = f" (retired {entry.retired_on})" if entry.retired_on else ""
    return (f"The model `{entry.spec.public_id}` is no longer served upstream{since}; "
            f"use `{entry.successor}` instead.")


class CatalogCache:
    """This process's snapshot of the catalog (one per Runtime)."""

    def __init__(self) -> None:
        self._snapshot: tuple[float, Catalog] | None = None

    async def get(self) -> Catalog:
        now = time.monotonic()
        snapshot = self._snapshot
        if snapshot is None or snapshot[0] <= now:
            try:
                self._snapshot = snapshot = (now + CATALOG_SECONDS, await db.run(load_catalog))
            except db.DatabaseUnavailable:
                if snapshot is None:
                    raise
                # keep serving the table we have while the database is down; look again shortly
                self._snapshot = snapshot = (now + CATALOG_RETRY_SECONDS, snapshot[1])
        return snapshot[1]

    def invalidate(self) -> None:
        """Read the table again at next use (kept meanwhile, in case the database is down then)."""
        if self._snapshot is not None:
            self._snapshot = (0.0, self._snapshot[1])
