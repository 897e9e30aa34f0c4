"""What a limit is in Redis: one counter per money limit of a key (its monthly limit, its
team's monthly budget, its team's prepaid balance), named by owner and month, and the
reservation one request holds against them."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from billing.months import billing_month
from billing.pricing import to_units

RESERVATION_INDEX = "th:res:index"


@dataclass(frozen=True, slots=True)
class Counter:
    """One money limit: a monthly cap on a key or team, or a team's prepaid balance."""

    kind: str            # "key" | "team" | "credit"
    owner_id: int
    month: str           # "" for the (not monthly) credit balance
    limit_units: int     # the cap; unused for the balance

    @property
    def mode(self) -> str:
        return "balance" if self.kind == "credit" else "cap"

    @property
    def prefix(self) -> str:
        if self.kind == "credit":
            return f"th:credit:{self.owner_id}"
        return f"th:{self.month}:{self.kind}:{self.owner_id}"

    @property
    def value_key(self) -> str:
        return self.prefix + (":balance" if self.kind == "credit" else ":spent")

    @property
    def reserved_key(self) -> str:
        return self.prefix + ":reserved"

    @property
    def version_key(self) -> str:
        return self.prefix + ":ver"

    def describe(self, key) -> str:
        if self.kind == "key":
            return f"the monthly limit of key '{key.name or key.prefix}'"
        if self.kind == "team":
            return f"the monthly budget of team '{key.team_name}'"
        return f"the prepaid credit balance of team '{key.team_name}'"

    def error_code(self) -> str:
        return {"key": "key_monthly_limit_exceeded", "team": "team_budget_exceeded",
                "credit": "credit_balance_exhausted"}[self.kind]


def counters_for(key, when: datetime) -> list[Counter]:
    month = billing_month(when)
    counters = []
    if key.monthly_limit is not None:
        counters.append(Counter("key", key.id, month, to_units(key.monthly_limit)))
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
