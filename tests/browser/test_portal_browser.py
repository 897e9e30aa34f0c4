"""The acceptance path in a real browser: log in, create a key and copy it, call the
gateway with it (openai SDK → gateway under uvicorn → simulator), see the request in the
log and the spend on the dashboard chart, download the month's CSV and check its totals
against the charges."""
from __future__ import annotations

import csv
import io
from decimal import Decimal

from django.contrib.auth import get_user_model

from billing.models import Charge
from billing.months import current_month
from billing.rollups import roll_up
from tokenhub_portal.accounts.models import Membership, Team

from .conftest import ARTIFACTS

PASSWORD = "browser-test-password-1"


def test_key_to_request_to_dashboard_to_csv(live, page):
    team = Team.objects.create(name="browser-team")
    user = get_user_model().objects.create_user("carol", "carol@example.com", PASSWORD)
    Membership.objects.create(team=team, user=user, role="owner")

    # Log in.
    page.goto("/")
    assert "/accounts/login/" in page.url
    page.fill("#id_username", "carol")
    page.fill("#id_password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(lambda url: url.rstrip("/").endswith(live.url.split("//")[1]) or url.endswith("/"))
    assert page.locator("h1").first.inner_text() == "browser-team"

    # Create a key; it is shown once; copy it.
    page.click("text=New API key")
    page.fill("#id_name", "from-the-browser")
    page.fill("#id_rpm", "120")
    page.check("input[value='claude-sonnet-4-6']")
    page.click("#key-form button[type=submit]")
    key = page.locator("#new-key").inner_text().strip()
    assert key.startswith("th-") and len(key) >= 43
    assert f"{live.url}/api/v1" in page.locator("#snippet-python").inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "key_created.png"), full_page=True)
    page.click("#copy-key")
    page.wait_for_function("document.querySelector('#copy-key').textContent.includes('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == key

    # Use it against the gateway.
    import openai

    client = openai.OpenAI(base_url=f"{live.url}/api/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(model="anthropic/claude-sonnet-4-6",
                                           messages=[{"role": "user", "content": "Hello from the browser test"}])
    charge = live.charge_of(reply.id)
    assert charge.team_id == team.id and charge.amount > 0

    # The request log shows it, and its detail page the exact cost.
    page.goto("/requests/")
    page.locator(f"a[href='/requests/{reply.id}/']").click()
    assert f"{charge.amount.quantize(Decimal('1e-10'))}" in page.locator("#cost").inner_text()

    # The roll-up (Celery beat task in production) runs; the dashboard chart shows the spend.
    roll_up()
    page.goto("/")
    bar = page.locator("svg.chart rect[data-model='claude-sonnet-4-6']")
    assert bar.count() == 1
    assert "claude-sonnet-4-6" in bar.locator("title").text_content()
    assert f"{charge.amount.quantize(Decimal('1e-10'))}" in page.locator("#stat-spend").inner_text()
    assert "from-the-browser" in page.locator("#top-keys").inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    # Download this month's CSV from the report page and check it against the ledger.
    page.goto(f"/reports/{current_month():%Y-%m}/")
    with page.expect_download() as download_info:
        page.click("#csv-link")
    with open(download_info.value.path(), encoding="utf-8") as f:
        text = f.read()
    rows = list(csv.DictReader(io.StringIO(text)))
    total = next(r for r in rows if r["section"] == "total")
    expected = sum((c.amount for c in Charge.objects.filter(team=team)), Decimal(0))
    assert Decimal(total["cost_usd"]) == expected
    assert int(total["requests"]) == 1
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
