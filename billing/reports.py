"""Monthly statements: per team and calendar month (in BILLING_TIME_ZONE), totals per
model and per key: requests, tokens by class, cost.

Two sources give the same numbers: the ledger (Charges joined to their records — what a
stored, final statement is computed from, so regenerating it is reproducible to the
1e-10 USD) and the hourly roll-ups (what the portal reads for the running month, fast at
millions of records). Both sum the same exact Decimals.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from tokenhub_portal.accounts.models import ApiKey, Team

from .models import Charge, Model, MonthlyStatement, UsageRollup
from .pricing import COST_QUANTUM
from .rollups import TOKEN_FIELDS, ledger_aggregates, summed, totals_by
from .selectors import month_start

MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
CSV_COLUMNS = ["section", "model", "key", "key_name", "requests", "errors", *TOKEN_FIELDS, "cost_usd"]


class BadMonth(ValueError):
    pass


def parse_month(text: str) -> date:
    m = MONTH_RE.match(text or "")
    if not m:
        raise BadMonth(f"{text!r} is not a month (YYYY-MM)")
    return date(int(m.group(1)), int(m.group(2)), 1)


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """[start, end) of a calendar month in the billing time zone, as aware datetimes."""
    tz = ZoneInfo(settings.BILLING_TIME_ZONE)
    start = datetime(month.year, month.month, 1, tzinfo=tz)
    nxt = date(month.year + (month.month == 12), month.month % 12 + 1, 1)
    return start, datetime(nxt.year, nxt.month, 1, tzinfo=tz)


def current_month(now: datetime | None = None) -> date:
    return month_start(now).date()


def last_closed_month(now: datetime | None = None) -> date:
    return month_start(month_start(now) - timedelta(days=1)).date()


def shift_month(month: date, delta: int) -> date:
    index = month.year * 12 + month.month - 1 + delta
    return date(index // 12, index % 12 + 1, 1)


@dataclass
class Line:
    model: str = ""
    key: str = ""          # key display prefix
    key_name: str = ""
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)

    @property
    def total_tokens(self) -> int:
        return sum(getattr(self, f) for f in TOKEN_FIELDS)

    def add(self, other: Line) -> None:
        for f in ("requests", "errors", *TOKEN_FIELDS, "cost"):
            setattr(self, f, getattr(self, f) + getattr(other, f))


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
    extra: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.month:%Y-%m}"

    @property
    def period(self) -> tuple[datetime, datetime]:
        return month_bounds(self.month)


def _line(row: dict, **labels) -> Line:
    return Line(requests=row["requests"] or 0, errors=row["errors"] or 0,
                cost=(row["cost"] or Decimal(0)).quantize(COST_QUANTUM),
                **{f: row[f] or 0 for f in TOKEN_FIELDS}, **labels)


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


def statement_from_rollups(team: Team, month: date) -> Statement:
    start, end = month_bounds(month)
    rows = UsageRollup.objects.filter(team=team, hour__gte=start, hour__lt=end)
    return _build(team, month, totals_by(rows, ["model_id"]), totals_by(rows, ["api_key_id"]), "rollups")


# --- stored statements -------------------------------------------------------------------

def _line_json(line: Line) -> dict:
    data = asdict(line)
    data["cost"] = format(line.cost.quantize(COST_QUANTUM), "f")
    return data


def _line_from_json(data: dict) -> Line:
    return Line(**{**data, "cost": Decimal(data["cost"])})


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
    return stored or statement_from_rollups(team, month)


def available_months(team: Team, now: datetime | None = None, limit: int = 24) -> list[date]:
    """Months with usage (from roll-ups) or a stored statement, newest first, plus the current month."""
    current = current_month(now)
    first = (UsageRollup.objects.filter(team=team).order_by("hour").values_list("hour", flat=True).first())
    stored = set(MonthlyStatement.objects.filter(team=team).values_list("month", flat=True))
    months = {current, *stored}
    if first is not None:
        m = max(current_month(first), shift_month(current, -limit))
        while m <= current:
            months.add(m)
            m = shift_month(m, 1)
    return sorted(months, reverse=True)[:limit]


# --- CSV -----------------------------------------------------------------------------------

def _cell(text: str) -> str:
    """Key names are user input: keep spreadsheets from running them as formulas."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_row(section: str, line: Line) -> list:
    return [section, line.model, line.key, _cell(line.key_name), line.requests, line.errors,
            *(getattr(line, f) for f in TOKEN_FIELDS), format(line.cost.quantize(COST_QUANTUM), "f")]


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
