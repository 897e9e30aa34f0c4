"""The money figures — month spend of a key and of a team, a team's credit balance — are
computed once (billing.selectors) and read alike by /key, the dashboard, the keys page and
the reports, whichever source holds each request: the hourly roll-ups, charges since the
last roll-up, or finished requests still waiting to be priced."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from billing.models import Charge, CreditEntry
from billing.months import billing_month, current_month, month_start
from billing.pricing import compute_cost
from billing.reports import statement_for
from billing.rollups import roll_up
from billing.selectors import ledger_spend, price_at
from billing.services import charge_request
from tokenhub_portal.accounts.models import Team
from tokenhub_portal.web.selectors import dashboard, monthly_totals, team_keys


def test_key_dashboard_keys_page_and_reports_agree(api, make_key, make_record):
    team = Team.objects.create(name="figures", monthly_budget=Decimal("50"), prepaid=True)
    CreditEntry.objects.create(team=team, amount=Decimal("20"))
    issued = make_key("figures", monthly_limit=Decimal("10"))
    now = timezone.now()
    rolled = make_record(issued, created=max(month_start(now), now - timedelta(hours=3)),
                         input_tokens=100_000, output_tokens=1_000)
    charge_request(rolled.pk)
    roll_up()
    charge_request(make_record(issued, input_tokens=10_000, output_tokens=2_000).pk)  # after the roll-up
    pending = make_record(issued, cache_read_tokens=50_000, output_tokens=500)      # not priced yet
    make_record(issued, "claude-haiku-4-5", status="error")                          # not priced yet

    charged = sum((c.amount for c in Charge.objects.filter(team=team)), Decimal(0))
    expected = charged + compute_cost(price_at(pending.model_id, pending.created), pending.tokens)
    assert ledger_spend("key", issued.api_key.pk, billing_month(now)) == expected  # what the limits hold

    key = api.get("/api/v1/key", issued.plaintext).json()["data"]
    board = dashboard(team, now)
    statement = statement_for(team, current_month(now), now)
    month = monthly_totals(team)[0]
    listed = next(k for k in team_keys(team, now) if k.pk == issued.api_key.pk)
    assert month["month"] == current_month(now)
    for figure in (Decimal(key["usage"]), Decimal(key["team_limits"]["usage"]), board.spend,
                   statement.total.cost, month["cost"], listed.month_spend):
        assert figure == expected
    assert board.requests == statement.total.requests == month["requests"] == 4
    assert Decimal(key["team_limits"]["credit_balance"]) == board.balance == Decimal(20) - expected
