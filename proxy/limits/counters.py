"""What a limit is in Redis: one counter per money limit of a key (its spend limit for its
period, its team's monthly budget, its team's prepaid balance), named by owner and window,
and the reservation one request holds against them.

A window is a day, an ISO week or a calendar month of BILLING_TIME_ZONE and its id is part
of the counter's name (th:2026-11-29:key:5, th:2026-W48:key:5, th:2026-11:team:3), so a new
day, week or month starts from a fresh counter, and a request settles on the window it
reserved in (its charge is dated by the same clock reading)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings

from billing.months import PERIODS, billing_month, limit_window, period_of, window_bounds
from billing.pricing import to_units

RESERVATION_INDEX = "th:res:index"


@dataclass(frozen=True, slots=True)
class Counter:
    """One money limit: a cap on a key's spend in a day/week/month window or on a team's
    spend in a month, or a team's prepaid balance."""

    kind: str            # "key" | "team" | "credit"
    owner_id: int
    window: str          # "2026-11-29" | "2026-W48" | "2026-11"; "" for the credit balance
    limit_units: int     # the cap; unused for the balance

    @property
    def mode(self) -> str:
        return "balance" if self.kind == "credit" else "cap"

    @property
    def prefix(self) -> str:
        if self.kind == "credit":
            return f"th:credit:{self.owner_id}"
        return f"th:{self.window}:{self.kind}:{self.owner_id}"

    @property
    def value_key(self) -> str:
        return self.prefix + (":balance" if self.kind == "credit" else ":spent")

    @property
    def reserved_key(self) -> str:
        return self.prefix + ":reserved"

    @property
    def version_key(self) -> str:
        return self.prefix + ":ver"

    @property
    def period(self) -> str:
        return period_of(self.window) if self.window else ""

    def describe(self, key) -> str:
        if self.kind == "key":
            return f"the {self.period} limit of key '{key.name or key.prefix}'"
        if self.kind == "team":
            return f"the monthly budget of team '{key.team_name}'"
        return f"the prepaid credit balance of team '{key.team_name}'"

    def resets(self) -> str:
        """When a window's cap starts over, for the 402 message ("" for the balance)."""
        if not self.window:
            return ""
        end = window_bounds(self.window)[1]
        return f" It resets at {end:%Y-%m-%d %H:%M} {settings.BILLING_TIME_ZONE}."

    def error_code(self) -> str:
        if self.kind == "key":
            return f"key_{self.period}_limit_exceeded"
        return {"team": "team_budget_exceeded", "credit": "credit_balance_exhausted"}[self.kind]


def counters_for(key, when: datetime) -> list[Counter]:
    month = billing_month(when)
    counters = []
    if key.monthly_limit is not None:
        counters.append(Counter("key", key.id, limit_window(key.limit_reset, when), to_units(key.monthly_limit)))
    if key.team_monthly_budget is not None:
        counters.append(Counter("team", key.team_id, month, to_units(key.team_monthly_budget)))
    if key.team_prepaid:
        counters.append(Counter("credit", key.team_id, "", 0))
    return counters


@dataclass(slots=True)
class Reservation:
    generation_id: str
    counters: list[Counter]
    worst_units: int
    tokens: int
    rate_headers: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"th:res:{self.generation_id}"


def current_windows(kind: str, when: datetime) -> list[str]:
    """The windows a counter of this kind may be keyed on now: a key's period may just
    have been edited, so all three of a key's."""
    if kind == "credit":
        return [""]
    if kind == "team":
        return [limit_window("monthly", when)]
    return [limit_window(period, when) for period in PERIODS]
