"""The operator console: staff only; numbers across teams; the teams table with search;
top-up, budget, suspend/resume (audited); any team's portal pages, read-only."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from billing.models import CreditEntry
from billing.services import charge_request
from tokenhub_portal.accounts.models import ApiKey, AuditEntry, Membership, Team

PASSWORD = "operator-test-password-1"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(seeded, make_key, make_record):
    User = get_user_model()
    w = type("World", (), {})()
    w.operator = User.objects.create_user("opal", "opal@example.com", PASSWORD, is_staff=True)
    w.alice = User.objects.create_user("alice", "alice@example.com", PASSWORD)
    w.alpha = Team.objects.create(name="alpha", monthly_budget=Decimal("50"))
    w.bravo = Team.objects.create(name="bravo", prepaid=True)
    Membership.objects.create(team=w.alpha, user=w.alice, role="owner")
    w.key_a = make_key("alpha", name="alpha-prod")
    w.key_b = make_key("bravo", name="bravo-prod")
    CreditEntry.objects.create(team=w.bravo, amount=Decimal("10"))
    w.rec_a = make_record(w.key_a, input_tokens=110)                     # $0.00033, priced
    charge_request(w.rec_a.id)
    w.err_b = make_record(w.key_b, "claude-haiku-4-5", status="error")  # unpriced, an error
    return w


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def test_console_is_for_staff_only(world):
    assert Client().get("/operator/")["Location"].startswith("/accounts/login/")
    assert client_for(world.alice).get("/operator/").status_code == 403
    assert client_for(world.alice).post(f"/operator/teams/{world.alpha.pk}/suspend/", {"suspended": "1"}).status_code == 403
    world.alpha.refresh_from_db()
    assert not world.alpha.suspended
    assert "nav-operator" not in client_for(world.alice).get("/").content.decode()


def test_staff_without_a_team_lands_on_the_console(world):
    client = client_for(world.operator)
    assert client.get("/")["Location"] == "/operator/"
    assert client.get("/keys/")["Location"] == "/operator/"


def test_console_shows_every_team_and_live_totals(world):
    response = client_for(world.operator).get("/operator/")
    assert response.status_code == 200
    body = response.content.decode()
    rows = dict(re.findall(r'<tr data-team="([^"]+)">(.*?)</tr>', body, re.S))
    assert set(rows) == {"alpha", "bravo"}
    assert "$50.00" in rows["alpha"] and "$0.00033" in rows["alpha"] and "not prepaid" in rows["alpha"]
    assert "$10.00" in rows["bravo"] and "active" in rows["bravo"]
    today = text(response).split("Today", 1)[1]
    assert today.startswith(" $0.00033 2 requests · 1 errors")  # both calls, the unpriced error too
    assert 'data-team="alpha"' in body and 'data-model="claude-sonnet-4-6"' in body  # both charts


def test_team_search(world):
    body = client_for(world.operator).get("/operator/?q=brav").content.decode()
    assert '<tr data-team="bravo">' in body and '<tr data-team="alpha">' not in body
    assert client_for(world.operator).get("/operator/?q=" + "x" * 500).status_code == 200


def test_top_up_set_budget_suspend_and_resume_are_audited(world):
    client = client_for(world.operator)
    team = world.bravo
    assert client.post(f"/operator/teams/{team.pk}/credit/", {"amount": "25.50", "note": "invoice 7"}).status_code == 302
    assert CreditEntry.objects.filter(team=team, amount=Decimal("25.50"), created_by=world.operator).exists()
    assert client.post(f"/operator/teams/{team.pk}/budget/", {"monthly_budget": "100", "prepaid": "on"}).status_code == 302
    assert client.post(f"/operator/teams/{team.pk}/suspend/", {"suspended": "1"}).status_code == 302
    team.refresh_from_db()
    assert team.suspended and team.monthly_budget == Decimal("100") and team.prepaid
    assert client.post(f"/operator/teams/{team.pk}/suspend/", {"suspended": "0", "next": "console"})["Location"] == "/operator/"
    team.refresh_from_db()
    assert not team.suspended
    entries = {e.action: e for e in AuditEntry.objects.filter(team=team, actor=world.operator)}
    assert {"credit.add", "team.budget", "team.suspend", "team.resume"} <= set(entries)
    assert all(e.source == "portal" and e.ip == "127.0.0.1" and e.actor_label == "opal" for e in entries.values())
    assert entries["credit.add"].after == {"amount": "25.5", "kind": "topup", "note": "invoice 7"}
    assert entries["team.budget"].before == {"monthly_budget": None} and entries["team.budget"].after == {
        "monthly_budget": "100"}
    assert entries["team.suspend"].after == {"suspended": True}
    page = client.get(f"/operator/teams/{team.pk}/").content.decode()
    assert "team.suspend" in page and "invoice 7" in page


@pytest.mark.parametrize(("path", "data"), [
    ("credit", {"amount": "0"}), ("credit", {"amount": "lots"}), ("credit", {"amount": "1e9999"}),
    ("budget", {"monthly_budget": "-5"}), ("budget", {"monthly_budget": "NaN"}),
])
def test_bad_operator_input_is_a_400_not_a_500(world, path, data):
    response = client_for(world.operator).post(f"/operator/teams/{world.alpha.pk}/{path}/", data)
    assert response.status_code == 400
    assert not CreditEntry.objects.filter(team=world.alpha).exists()
    world.alpha.refresh_from_db()
    assert world.alpha.monthly_budget == Decimal("50")


def test_suspend_needs_an_explicit_value(world):
    client = client_for(world.operator)
    assert client.post(f"/operator/teams/{world.alpha.pk}/suspend/", {"suspended": "yes"}).status_code == 400
    assert client.post(f"/operator/teams/{world.alpha.pk}/suspend/").status_code == 400
    assert client.get(f"/operator/teams/{world.alpha.pk}/suspend/").status_code == 405


def test_unknown_team_is_404(world):
    client = client_for(world.operator)
    assert client.get("/operator/teams/999999/").status_code == 404
    assert client.post("/operator/teams/999999/suspend/", {"suspended": "1"}).status_code == 404


def test_operator_opens_a_teams_portal_read_only(world):
    client = client_for(world.operator)
    assert client.post(f"/operator/teams/{world.alpha.pk}/view/")["Location"] == "/"
    dashboard = client.get("/").content.decode()
    assert "<h1>alpha</h1>" in dashboard and "operator-banner" in dashboard and "$0.00033" in dashboard
    for path in ["/keys/", "/requests/", "/reports/", "/team/", f"/requests/{world.rec_a.generation_id}/"]:
        assert client.get(path).status_code == 200, path
    assert world.key_b.api_key.prefix not in client.get("/keys/").content.decode()
    # Read-only: no key created or revoked, no settings changed.
    assert client.post("/keys/new/", {"name": "sneaky"}).status_code == 403
    assert client.post(f"/keys/{world.key_a.api_key.pk}/revoke/").status_code == 403
    assert client.post("/team/alerts/", {"thresholds": "10", "webhook_url": ""}).status_code == 403
    assert not ApiKey.objects.filter(name="sneaky").exists()
    assert ApiKey.objects.get(pk=world.key_a.api_key.pk).revoked_at is None
    # Leaving returns to the console's page of that team.
    assert client.post("/operator/leave/")["Location"] == f"/operator/teams/{world.alpha.pk}/"
    assert client.get("/")["Location"] == "/operator/"


def test_view_as_is_ignored_for_non_staff(world):
    client = client_for(world.alice)
    session = client.session
    session["operator_team_id"] = world.bravo.pk  # forged
    session.save()
    body = client.get("/").content.decode()
    assert "<h1>alpha</h1>" in body and "bravo" not in body
    assert client.post(f"/operator/teams/{world.bravo.pk}/view/").status_code == 403


def test_suspended_team_sees_a_banner(world):
    world.alpha.suspended = True
    world.alpha.save()
    assert "suspended-banner" in client_for(world.alice).get("/").content.decode()
