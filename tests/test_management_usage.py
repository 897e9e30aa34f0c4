"""The management API's usage reads: the request log (cursor pages, django-filter
filters), usage grouped by day/model/key/user, monthly statements (JSON and CSV). Every
total equals the charges to the 1e-10 USD. Usage and statements read the money figures
of billing.selectors (roll-ups for past hours, then charges and requests being priced)."""
import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum

from billing.models import Charge
from billing.reports import generate_statement
from billing.rollups import roll_up
from billing.services import charge_request, price_pending
from tokenhub_portal.accounts.models import ApiKey, Team
from tokenhub_portal.web.services import issue_key

from .conftest import assert_openai_error

pytestmark = pytest.mark.django_db
MONTH = datetime(2025, 7, 1, tzinfo=UTC)


@pytest.fixture
def ledger(seeded, make_key, make_record):
    """Two keys of acme with odd amounts over three days and two models, and one of globex."""
    a = make_key("acme", name="alpha")
    b = make_key("acme", name="beta")
    g = make_key("globex", name="gamma")
    rows = [
        (a, "claude-sonnet-4-6", 0, dict(input_tokens=1234, output_tokens=77, cache_read_tokens=999, end_user="u1")),
        (a, "claude-haiku-4-5", 0, dict(input_tokens=7, output_tokens=3, cache_write_5m_tokens=11, end_user="u2")),
        (b, "claude-sonnet-4-6", 1, dict(input_tokens=333, output_tokens=1, cache_write_1h_tokens=5, end_user="u1")),
        (b, "claude-opus-4-7", 2, dict(input_tokens=1, output_tokens=1)),
        (a, "claude-sonnet-4-6", 2, dict(status="error", input_tokens=0)),
        (g, "claude-sonnet-4-6", 1, dict(input_tokens=10**6, output_tokens=10**6)),
    ]
    for key, model, day, fields in rows:
        make_record(key, model, created=MONTH + timedelta(days=day, hours=3), **fields)
    price_pending()
    roll_up()  # what the beat does every minute: these hours are long past
    return a, b, g


def manager(team_name="acme"):
    return issue_key(Team.objects.get(name=team_name), name="m", kind=ApiKey.Kind.MANAGEMENT).plaintext


def window():
    return {"from": MONTH.isoformat(), "to": (MONTH + timedelta(days=31)).isoformat()}


def acme_charges():
    return Charge.objects.filter(team__name="acme")


def test_usage_totals_equal_the_charges_exactly_for_every_grouping(api, ledger):
    key = manager()
    exact = acme_charges().aggregate(total=Sum("amount"))["total"]
    assert exact.as_tuple().exponent < -6  # amounts with many decimals: float sums would drift
    for group_by in ("day", "model", "key", "user"):
        r = api.get("/api/v1/usage", key, params={**window(), "group_by": group_by})
        assert r.status_code == 200, r.text
        body = r.json()
        assert Decimal(body["total"]["cost"]) == exact
        assert sum(Decimal(row["cost"]) for row in body["data"]) == exact
        assert sum(row["requests"] for row in body["data"]) == body["total"]["requests"] == 5
        assert body["total"]["errors"] == 1
    days = api.get("/api/v1/usage", key, params={**window(), "group_by": "day"}).json()["data"]
    assert [d["day"] for d in days] == ["2025-07-01", "2025-07-02", "2025-07-03"]
    models = {m["model"]: m for m in api.get("/api/v1/usage", key, params={**window(), "group_by": "model"}).json()["data"]}
    assert models["claude-haiku-4-5"]["cache_write_5m_tokens"] == 11
    assert models["claude-sonnet-4-6"]["cache_read_tokens"] == 999 and models["claude-sonnet-4-6"]["requests"] == 3
    keys = {k["key_name"]: k for k in api.get("/api/v1/usage", key, params={**window(), "group_by": "key"}).json()["data"]}
    assert set(keys) == {"alpha", "beta"} and keys["beta"]["key"] == ledger[1].api_key.key_hash
    assert Decimal(keys["beta"]["cost"]) == Charge.objects.filter(api_key=ledger[1].api_key).aggregate(t=Sum("amount"))["t"]
    users = {u["user"]: u for u in api.get("/api/v1/usage", key, params={**window(), "group_by": "user"}).json()["data"]}
    assert set(users) == {"u1", "u2", ""} and users["u1"]["requests"] == 2


def test_usage_range_and_bad_parameters(api, ledger):
    key = manager()
    second_day = {"from": (MONTH + timedelta(days=1)).isoformat(), "to": (MONTH + timedelta(days=2)).isoformat()}
    body = api.get("/api/v1/usage", key, params=second_day).json()
    assert body["total"]["requests"] == 1
    assert Decimal(body["total"]["cost"]) == acme_charges().filter(
        occurred_at__gte=MONTH + timedelta(days=1), occurred_at__lt=MONTH + timedelta(days=2)).get().amount
    assert api.get("/api/v1/usage", key).json()["total"]["requests"] == 0  # default: this month, nothing yet
    assert assert_openai_error(api.get("/api/v1/usage", key, params={"group_by": "team"}), 400)["param"] == "group_by"
    assert assert_openai_error(api.get("/api/v1/usage", key, params={"from": "yesterday"}), 400)["param"] == "from"
    err = assert_openai_error(api.get("/api/v1/usage", key, params={"from": window()["to"], "to": window()["from"]}), 400)
    assert err["param"] == "to"


def test_request_log_filters_and_cursor_pages(api, ledger):
    key = manager()
    a, b, _ = ledger
    r = api.get("/api/v1/requests", key, params={"limit": 2})
    assert r.status_code == 200, r.text
    page, seen = r.json(), []
    while True:
        seen += page["data"]
        if not page["next"]:
            break
        page = api.get(page["next"].replace("http://testserver", ""), key).json()
    assert len(seen) == 5 and len({row["id"] for row in seen}) == 5  # no duplicates across pages
    assert [row["created_at"] for row in seen] == sorted((row["created_at"] for row in seen), reverse=True)
    assert sum(Decimal(row["cost"]) for row in seen) == acme_charges().aggregate(t=Sum("amount"))["t"]
    assert {row["cost_status"] for row in seen} == {"final"}

    def ids(**params):
        return [row["id"] for row in api.get("/api/v1/requests", key, params=params).json()["data"]]

    assert len(ids(key=b.api_key.key_hash)) == 2
    assert len(ids(model="claude-sonnet-4-6")) == 3 and len(ids(model="anthropic/claude-sonnet-4-6")) == 0
    assert len(ids(status="error")) == 1 and len(ids(user="u1")) == 2 and len(ids(api="chat.completions")) == 5
    assert len(ids(api="messages")) == 0
    assert len(ids(**{"from": (MONTH + timedelta(days=1)).isoformat()})) == 3
    assert len(ids(**{"to": (MONTH + timedelta(days=1)).isoformat()})) == 2
    assert assert_openai_error(api.get("/api/v1/requests", key, params={"status": "weird"}), 400)["param"] == "status"
    assert assert_openai_error(api.get("/api/v1/requests", key, params={"from": "x"}), 400)["param"] == "from"
    assert_openai_error(api.get("/api/v1/requests", key, params={"cursor": "garbage"}), 404)
    assert ids(key=ledger[2].api_key.key_hash) == []  # another team's key: nothing


def test_statement_json_and_csv_equal_the_charges(api, ledger, settings):
    key = manager()
    exact = acme_charges().aggregate(total=Sum("amount"))["total"]
    r = api.get("/api/v1/statements/2025-07", key)
    assert r.status_code == 200, r.text
    st = r.json()["data"]
    assert st["team"] == "acme" and st["month"] == "2025-07" and st["final"] is False
    assert Decimal(st["total"]["cost"]) == exact == sum(Decimal(x["cost"]) for x in st["by_model"])
    assert sum(Decimal(x["cost"]) for x in st["by_key"]) == exact and st["total"]["requests"] == 5
    r = api.get("/api/v1/statements/2025-07", key, params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert Decimal(next(x for x in rows if x["section"] == "total")["cost_usd"]) == exact
    generate_statement(Team.objects.get(name="acme"), MONTH.date())
    st = api.get("/api/v1/statements/2025-07", key).json()["data"]
    assert st["final"] is True and Decimal(st["total"]["cost"]) == exact
    assert assert_openai_error(api.get("/api/v1/statements/2025-13", key), 400)["param"] == "month"
    assert assert_openai_error(api.get("/api/v1/statements/2025-07", key, params={"format": "xml"}), 400)["param"] == "format"


def test_key_usage_fields_follow_the_ledger(api, seeded, make_key, make_record):
    issued = make_key("acme", name="spender", monthly_limit=Decimal("1.00"), limit_reset="weekly")
    key = manager()
    now = datetime.now(UTC)
    charge_request(make_record(issued, created=now, input_tokens=100_000).pk)      # $0.30, priced
    make_record(issued, created=now, input_tokens=10_000)                          # $0.03, still pending
    data = api.get(f"/api/v1/keys/{issued.api_key.key_hash}", key).json()["data"]
    assert data["usage"] == data["usage_daily"] == data["usage_weekly"] == "0.33"
    assert data["limit_remaining"] == "0.67" and data["limit_reset"] == "weekly"
