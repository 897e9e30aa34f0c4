"""Portal pages through Django's test Client: login required, team isolation (a member of
team B gets 404 on team A's objects), role rules (members see keys but cannot manage
them), CSRF on POST, and what each page shows."""
from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from billing.models import Charge
from billing.rollups import roll_up
from billing.services import charge_request
from tokenhub_portal.accounts.keys import hash_key
from tokenhub_portal.accounts.models import ApiKey, Membership, Team

PASSWORD = "correct-horse-battery-staple"
NOW = datetime.now(UTC)


class World:
    pass


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(seeded, make_key, make_record):
    User = get_user_model()
    w = World()
    w.a = Team.objects.create(name="alpha", monthly_budget=Decimal("100"))
    w.b = Team.objects.create(name="bravo", prepaid=True)
    for name, team, role in [("alice", w.a, "owner"), ("adam", w.a, "admin"), ("mia", w.a, "member"),
                             ("bob", w.b, "owner")]:
        user = User.objects.create_user(name, f"{name}@example.com", PASSWORD)
        Membership.objects.create(user=user, team=team, role=role)
        setattr(w, name, user)
    w.key_a = make_key("alpha", name="alpha-prod")
    w.key_b = make_key("bravo", name="bravo-prod")
    w.rec_a = make_record(w.key_a, input_tokens=1200, output_tokens=300, cache_read_tokens=50, latency_ms=420,
                          ttft_ms=120)
    w.err_a = make_record(w.key_a, "claude-haiku-4-5", status="error", error_message="Overloaded")
    w.rec_b = make_record(w.key_b, input_tokens=10, output_tokens=10)
    for record in (w.rec_a, w.err_a, w.rec_b):
        charge_request(record.id)
    roll_up()
    return w


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


PAGES = ["/", "/keys/", "/keys/new/", "/requests/", "/reports/", f"/reports/{NOW:%Y-%m}/",
         f"/reports/{NOW:%Y-%m}.csv", f"/reports/{NOW:%Y-%m}/statement/", "/team/"]


@pytest.mark.parametrize("path", PAGES)
def test_pages_require_login(db, path):
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("path", PAGES)
def test_owner_sees_every_page(world, path):
    assert login(world.alice).get(path).status_code == 200


@pytest.mark.parametrize("path", [p for p in PAGES if p != "/keys/new/"])
def test_member_sees_read_pages(world, path):
    assert login(world.mia).get(path).status_code == 200


def test_dashboard_shows_month_spend_chart_top_keys_and_errors(world):
    body = login(world.alice).get("/").content.decode()
    spend = Charge.objects.get(request=world.rec_a).amount
    assert f"{spend.quantize(Decimal('1e-10'))}" in body  # exact spend of the month
    assert 'data-model="claude-sonnet-4-6"' in body       # a bar of the SVG chart
    assert "alpha-prod" in body and "overloaded_error" in body
    assert "bravo" not in body.replace("bravo-", "")      # nothing of team B
    assert "$100.00 monthly budget" in re.sub(r"<[^>]+>", "", body)  # amounts carry their exact value as a tooltip


def test_prepaid_dashboard_shows_balance(world):
    from billing.models import CreditEntry

    CreditEntry.objects.create(team=world.b, amount=Decimal("5"))
    body = login(world.bob).get("/").content.decode()
    charged = Charge.objects.get(request=world.rec_b).amount
    assert f"${(Decimal(5) - charged).quantize(Decimal('0.01'))}" in body


# --- isolation -------------------------------------------------------------------------------

def test_other_teams_request_is_404(world):
    bob = login(world.bob)
    assert bob.get(f"/requests/{world.rec_a.generation_id}/").status_code == 404
    assert bob.get(f"/requests/{world.rec_b.generation_id}/").status_code == 200


def test_other_teams_key_cannot_be_revoked(world):
    response = login(world.bob).post(f"/keys/{world.key_a.api_key.pk}/revoke/")
    assert response.status_code == 404
    assert ApiKey.objects.get(pk=world.key_a.api_key.pk).revoked_at is None


def test_lists_show_only_own_team(world):
    bob = login(world.bob)
    keys = bob.get("/keys/").content.decode()
    assert world.key_b.api_key.prefix in keys and world.key_a.api_key.prefix not in keys
    log = bob.get("/requests/").content.decode()
    assert world.rec_b.generation_id in log and world.rec_a.generation_id not in log
    # Filtering by another team's key id is rejected, not honoured.
    log = bob.get(f"/requests/?key={world.key_a.api_key.pk}").content.decode()
    assert world.rec_a.generation_id not in log
    csv_text = bob.get(f"/reports/{NOW:%Y-%m}.csv").content.decode()
    assert world.key_a.api_key.prefix not in csv_text


def test_cannot_switch_to_a_team_you_are_not_in(world):
    bob = login(world.bob)
    assert bob.post("/team/switch/", {"team": world.a.id}).status_code == 404
    assert "bravo" in bob.get("/").content.decode()


def test_session_team_of_a_lost_membership_is_not_trusted(world):
    client = login(world.bob)
    session = client.session
    session["team_id"] = world.a.id  # forged / stale
    session.save()
    body = client.get("/").content.decode()
    assert "<h1>bravo</h1>" in body and "alpha-prod" not in body


def test_switch_between_own_teams(world):
    Membership.objects.create(user=world.bob, team=world.a, role="member")
    bob = login(world.bob)
    assert bob.post("/team/switch/", {"team": world.a.id, "next": "/keys/"})["Location"] == "/keys/"
    assert world.key_a.api_key.prefix in bob.get("/keys/").content.decode()
    assert bob.post("/keys/new/", {"name": "x"}).status_code == 403  # a member in alpha
    # An off-site `next` is not followed.
    assert bob.post("/team/switch/", {"team": world.b.id, "next": "https://evil.example/"})["Location"] == "/"


# --- roles -----------------------------------------------------------------------------------

def test_member_cannot_create_or_revoke_keys(world):
    mia = login(world.mia)
    assert mia.get("/keys/new/").status_code == 403
    assert mia.post("/keys/new/", {"name": "sneaky"}).status_code == 403
    assert mia.post(f"/keys/{world.key_a.api_key.pk}/revoke/").status_code == 403
    assert not ApiKey.objects.filter(name="sneaky").exists()
    assert ApiKey.objects.get(pk=world.key_a.api_key.pk).revoked_at is None
    assert "Revoke" not in mia.get("/keys/").content.decode()


def test_admin_creates_key_shown_once_with_snippets(world):
    response = login(world.adam).post("/keys/new/", {
        "name": "ci", "monthly_limit": "25.50", "rpm": "60", "tpm": "100000",
        "models": ["claude-sonnet-4-6", "claude-haiku-4-5"],
        "expires": (NOW + timedelta(days=30)).date().isoformat(),
    })
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.content.decode()
    plaintext = re.search(r'id="new-key">(th-[A-Za-z0-9_-]{40,})<', body).group(1)
    key = ApiKey.objects.get(key_hash=hash_key(plaintext))
    assert key.team == world.a and key.created_by == world.adam and key.name == "ci"
    assert key.monthly_limit == Decimal("25.50") and (key.rpm_limit, key.tpm_limit) == (60, 100000)
    assert set(key.allowed_models) == {"claude-sonnet-4-6", "claude-haiku-4-5"} and key.expires_at > NOW
    assert "http://testserver/api/v1/chat/completions" in body and 'base_url="http://testserver/api/v1"' in body
    assert "navigator.clipboard.writeText" in body
    # Never shown again.
    assert plaintext not in login(world.adam).get("/keys/").content.decode()


def test_key_form_validation(world):
    alice = login(world.alice)
    past = (NOW - timedelta(days=1)).date().isoformat()
    response = alice.post("/keys/new/", {"name": "old", "expires": past, "models": ["no-such-model"],
                                         "monthly_limit": "-1"})
    assert response.status_code == 200 and "new-key" not in response.content.decode()
    assert not ApiKey.objects.filter(name="old").exists()


def test_owner_revokes_key(world):
    alice = login(world.alice)
    response = alice.post(f"/keys/{world.key_a.api_key.pk}/revoke/")
    assert response.status_code == 302
    assert ApiKey.objects.get(pk=world.key_a.api_key.pk).revoked_at is not None
    assert 'badge revoked' in alice.get("/keys/").content.decode()
    assert alice.get(f"/keys/{world.key_a.api_key.pk}/revoke/").status_code == 405


def test_csrf_is_enforced(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.alice)
    assert client.post("/keys/new/", {"name": "nocsrf"}).status_code == 403
    assert client.post(f"/keys/{world.key_a.api_key.pk}/revoke/").status_code == 403
    assert client.post("/team/switch/", {"team": world.a.id}).status_code == 403
    assert not ApiKey.objects.filter(name="nocsrf").exists()
    page = client.get("/keys/new/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert client.post("/keys/new/", {"name": "withcsrf", "csrfmiddlewaretoken": token}).status_code == 200
    assert ApiKey.objects.filter(name="withcsrf").exists()


# --- request log -------------------------------------------------------------------------------

def test_request_log_filters(world, make_record):
    alice = login(world.alice)
    body = alice.get("/requests/?status=error").content.decode()
    assert world.err_a.generation_id in body and world.rec_a.generation_id not in body
    body = alice.get("/requests/?model=claude-sonnet-4-6").content.decode()
    assert world.rec_a.generation_id in body and world.err_a.generation_id not in body
    other = make_key_for(world.a, "other")
    rec = make_record(other, created=NOW - timedelta(days=3))
    body = alice.get(f"/requests/?key={other.pk}").content.decode()
    assert rec.generation_id in body and world.rec_a.generation_id not in body
    day = (NOW - timedelta(days=3)).date().isoformat()
    body = alice.get(f"/requests/?date_from={day}&date_to={day}").content.decode()
    assert rec.generation_id in body and world.rec_a.generation_id not in body


def make_key_for(team, name):
    from tokenhub_portal.web.services import issue_key

    return issue_key(team, name=name).api_key


def test_request_log_pages_by_keyset(world, make_record):
    base = NOW - timedelta(hours=2)
    made = [make_record(world.key_a, created=base - timedelta(seconds=i)).generation_id for i in range(60)]
    alice = login(world.alice)
    first = alice.get("/requests/").content.decode()
    cursor = re.search(r'id="older" href="\?([^"]+)"', first).group(1).replace("&amp;", "&")
    second = alice.get(f"/requests/?{cursor}").content.decode()
    seen = set(re.findall(r"/requests/(chatcmpl-[^/]+)/", first)) | set(re.findall(r"/requests/(chatcmpl-[^/]+)/", second))
    assert set(made) <= seen
    assert not set(re.findall(r"/requests/(chatcmpl-[^/]+)/", first)) & set(re.findall(r"/requests/(chatcmpl-[^/]+)/", second))
    assert 'id="older"' not in second
    assert alice.get("/requests/?cursor=garbage").status_code == 200


def test_request_detail_shows_tokens_cost_and_price_version(world):
    body = login(world.mia).get(f"/requests/{world.rec_a.generation_id}/").content.decode()
    charge = Charge.objects.get(request=world.rec_a)
    assert f"{charge.amount.quantize(Decimal('1e-10'))}" in body
    assert f"Price version #{charge.price_id}" in body
    assert "1,200" in body and "420 ms" in body and "120 ms" in body


# --- reports ---------------------------------------------------------------------------------

def test_report_pages_and_csv(world):
    alice = login(world.alice)
    month = f"{NOW:%Y-%m}"
    assert month in alice.get("/reports/").content.decode()
    page = alice.get(f"/reports/{month}/").content.decode()
    assert "claude-sonnet-4-6" in page and "alpha-prod" in page
    response = alice.get(f"/reports/{month}.csv")
    assert response["Content-Type"].startswith("text/csv")
    assert f'filename="tokenhub-alpha-{month}.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    total = next(r for r in rows if r["section"] == "total")
    expected = sum(c.amount for c in Charge.objects.filter(team=world.a))
    assert Decimal(total["cost_usd"]) == expected
    assert int(total["requests"]) == 2 and int(total["errors"]) == 1
    statement = alice.get(f"/reports/{month}/statement/").content.decode()
    assert "@media print" in statement and "alpha" in statement


@pytest.mark.parametrize("path", ["/reports/2026-13/", "/reports/2999-01/", "/reports/2999-01.csv",
                                  "/reports/1999-1/statement/"])
def test_bad_or_future_months_are_404(world, path):
    assert login(world.alice).get(path).status_code == 404


def test_user_without_team_is_sent_to_welcome(db):
    user = get_user_model().objects.create_user("loner", "l@example.com", PASSWORD)
    client = login(user)
    assert client.get("/")["Location"] == "/welcome/"
    assert client.get("/welcome/").status_code == 200
    client.post("/team/new/", {"name": "solo"})
    assert Membership.objects.get(user=user).role == "owner"
    assert client.get("/").status_code == 200


def test_statement_pdf(world):
    pytest.importorskip("weasyprint", reason="server-side PDF is optional (WeasyPrint)")
    response = login(world.alice).get(f"/reports/{NOW:%Y-%m}.pdf")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF") and len(response.content) > 2000
    assert login(world.bob).get(f"/reports/{NOW:%Y-%m}.pdf").status_code == 200  # bob's own team only
    assert Client().get(f"/reports/{NOW:%Y-%m}.pdf").status_code == 302


def test_request_log_shows_and_filters_by_api_and_end_user(world, make_record):
    via_messages = make_record(world.key_a, api="messages", end_user="customer-42")
    via_responses = make_record(world.key_a, api="responses", end_user="customer-7")
    alice = login(world.alice)
    body = alice.get("/requests/").content.decode()
    assert 'data-api="messages">Anthropic Messages<' in body and 'data-api="responses">Responses<' in body
    assert 'data-api="chat.completions">Chat Completions<' in body
    assert 'href="?user=customer-42"' in body
    body = alice.get("/requests/?api=messages").content.decode()
    assert via_messages.generation_id in body and via_responses.generation_id not in body
    assert world.rec_a.generation_id not in body
    body = alice.get("/requests/?user=customer-7").content.decode()
    assert via_responses.generation_id in body and via_messages.generation_id not in body
    body = alice.get("/requests/?user=customer-7&api=messages").content.decode()
    assert "No requests match." in body
    assert alice.get("/requests/?api=bogus&user=" + "x" * 400).status_code == 200  # invalid filters: ignored
    assert "Anthropic Messages" in alice.get(f"/requests/{via_messages.generation_id}/").content.decode()
    # Another team's end users stay invisible.
    assert via_messages.generation_id not in login(world.bob).get("/requests/?user=customer-42").content.decode()
