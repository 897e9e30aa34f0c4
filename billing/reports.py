"""Monthly statements: per team and calendar month (in BILLING_TIME_ZONE), totals per
model and per key: requests, tokens by class, cost.

Two sources give the same numbers: the ledger (Charges joined to their records — what a
stored, final statement is computed from, so regenerating it is reproducible to the
1e-10 USD) and billing.selectors.usage (the hourly roll-ups plus the live tail: what the
portal reads for the running month, fast at millions of records, and the same figures
as the dashboard and /key). Both sum the same exact Decimals.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from tokenhub_portal.accounts.models import ApiKey, Team

from .models import Charge, Model, MonthlyStatement
from .months import current_month, month_bounds
from .pricing import COST_QUANTUM
from .rollups import ledger_aggregates, summed
from .selectors import usage
from .tokens import COLUMNS, TokenCounts

CSV_COLUMNS = ["section", "model", "key", "key_name", "requests", "errors", *COLUMNS, "cost_usd"]


@dataclass
class Line:
    model: str = ""
    key: str = ""          # key display prefix
    key_name: str = ""
    requests: int = 0
    errors: int = 0
    tokens: TokenCounts = TokenCounts()
    cost: Decimal = Decimal(0)

    @property
    def total_tokens(self) -> int:
        return self.tokens.total_tokens

    def add(self, other: Line) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.tokens += other.tokens
        self.cost += other.cost


@dataclass
class Statement:
    team: Team
    month: date
    by_model: list[Line]
    by_key: list[Line]
    total: Line
    source: str            # "ledger" (stored/final) or "rollups" (live)
    generated_at: datetime
    final: bool = False

    @property
    def label(self) -> str:
        return f"{self.month:%Y-%m}"

    @property
    def period(self) -> tuple[datetime, datetime]:
        return month_bounds(self.month)


def _line(row: dict, **labels) -> Line:
    return Line(requests=row["requests"] or 0, errors=row["errors"] or 0, tokens=TokenCounts.from_columns(row),
                cost=(row["cost"] or Decimal(0)).quantize(COST_QUANTUM), **labels)


def _build(team: Team, month: date, model_rows: list[dict], key_rows: list[dict], source: str) -> Statement:
    models = dict(Model.objects.values_list("id", "public_id"))
    keys = {k.id: k for k in ApiKey.objects.filter(id__in=[r["api_key_id"] for r in key_rows])}
    by_model = [_line(r, model=models.get(r["model_id"], "(unknown model)")) for r in model_rows]
    by_key = [_line(r, key=keys[r["api_key_id"]].prefix, key_name=keys[r["api_key_id"]].name) for r in key_rows]
    order = lambda line: (-line.cost, -line.requests, line.model or line.key)  # noqa: E731
    by_model.sort(key=order)
    by_key.sort(key=order)
    total = Line(model="", key="")
    for line in by_model:
        total.add(line)
    return Statement(team=team, month=month, by_model=by_model, by_key=by_key, total=total, source=source,
                     generated_at=timezone.now())


def statement_from_ledger(team: Team, month: date) -> Statement:
    start, end = month_bounds(month)
    charges = Charge.objects.filter(team=team, occurred_at__gte=start, occurred_at__lt=end)
    agg = ledger_aggregates()
    return _build(team, month, summed(charges, ["model_id"], agg, "amount"),
                  summed(charges, ["api_key_id"], agg, "amount"), "ledger")


def statement_from_rollups(team: Team, month: date, now: datetime | None = None) -> Statement:
    """The live statement: roll-ups plus the charges and pending requests they do not hold yet."""
    start, end = month_bounds(month)
    span = {"team_id": team.pk, "start": start, "end": end, "now": now}
    return _build(team, month, usage(["model_id"], **span), usage(["api_key_id"], **span), "rollups")


# --- stored statements -------------------------------------------------------------------

def _line_json(line: Line) -> dict:
    return {"model": line.model, "key": line.key, "key_name": line.key_name, "requests": line.requests,
            "errors": line.errors, **line.tokens.columns(), "cost": format(line.cost.quantize(COST_QUANTUM), "f")}


def _line_from_json(data: dict) -> Line:
    return Line(model=data["model"], key=data["key"], key_name=data["key_name"], requests=data["requests"],
                errors=data["errors"], tokens=TokenCounts.from_columns(data), cost=Decimal(data["cost"]))


def generate_statement(team: Team, month: date) -> MonthlyStatement:
    """Computes a team's statement for a month from the ledger and stores it (replacing
    an earlier one). Deterministic: same charges → same statement."""
    st = statement_from_ledger(team, month)
    data = {"by_model": [_line_json(x) for x in st.by_model], "by_key": [_line_json(x) for x in st.by_key],
            "total": _line_json(st.total)}
    with transaction.atomic():
        stored, _ = MonthlyStatement.objects.update_or_create(
            team=team, month=month,
            defaults={"total": st.total.cost, "requests": st.total.requests, "data": data,
                      "generated_at": st.generated_at},
        )
    return stored


def teams_with_activity(month: date) -> list[Team]:
    start, end = month_bounds(month)
    ids = Charge.objects.filter(occurred_at__gte=start, occurred_at__lt=end).values("team_id").distinct()
    return list(Team.objects.filter(id__in=ids))


def generate_statements(month: date, *, team: Team | None = None, only_missing: bool = False) -> list[MonthlyStatement]:
    teams = [team] if team is not None else teams_with_activity(month)
    if only_missing:
        done = set(MonthlyStatement.objects.filter(month=month).values_list("team_id", flat=True))
        teams = [t for t in teams if t.id not in done]
    return [generate_statement(t, month) for t in teams]


def stored_statement(team: Team, month: date) -> Statement | None:
    row = MonthlyStatement.objects.filter(team=team, month=month).first()
    if row is None:
        return None
    return Statement(team=team, month=month, by_model=[_line_from_json(x) for x in row.data["by_model"]],
                     by_key=[_line_from_json(x) for x in row.data["by_key"]],
                     total=_line_from_json(row.data["total"]), source="ledger", generated_at=row.generated_at,
                     final=True)


def statement_for(team: Team, month: date, now: datetime | None = None) -> Statement:
    """What the portal shows: the stored statement of a closed month if there is one,
    otherwise the live figures from the roll-ups (always, for the month in progress:
    a statement generated on demand mid-month would be stale at once)."""
    stored = stored_statement(team, month) if month < current_month(now) else None
    return stored or statement_from_rollups(team, month, now)


# --- CSV -----------------------------------------------------------------------------------

def _cell(text: str) -> str:
    """Key names are user input: keep spreadsheets from running them as formulas."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_row(section: str, line: Line) -> list:
    return [section, line.model, line.key, _cell(line.key_name), line.requests, line.errors,
            *line.tokens, format(line.cost.quantize(COST_QUANTUM), "f")]


def statement_csv(st: Statement) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for line in st.by_model:
        writer.writerow(_csv_row("model", line))
    for line in st.by_key:
        writer.writerow(_csv_row("key", line))
    writer.writerow(_csv_row("total", st.total))
    return out.getvalue()
