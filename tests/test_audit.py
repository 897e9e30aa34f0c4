"""The audit log: who created, revoked or changed a key, a limit, a budget, a credit, a price
or a team's status, when, and from where (portal, API, admin, command); team admins see
their own team's entries, staff see all."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from billing.models import Model, Price
from tokenhub_portal.accounts.audit import audit_context, record
from tokenhub_portal.accounts.models import ApiKey, AuditEntry, Membership, Team
from tokenhub_portal.accounts.services import revoke_key, set_team_budget, set_team_suspended
from tokenhub_portal.web.middleware import request_source

PASSWORD = "audit-test-password-1"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(seeded, make_key):
    User = get_user_model()
    w = SimpleNamespace()
    w.root = User.objects.create_superuser("root", "root@example.com", PASSWORD)
    w.alpha, w.bravo = Team.objects.create(name="alpha"), Team.objects.create(name="bravo")
    for name, team, role in [("alice", w.alpha, "owner"), ("mia", w.alpha, "member"), ("bob", w.bravo, "admin")]:
        user = User.objects.create_user(name, f"{name}@example.com", PASSWORD)
        Membership.objects.create(team=team, user=user, role=role)
        setattr(w, name, user)
    w.key_a = make_key("alpha", name="alpha-prod").api_key
    w.key_b = make_key("bravo", name="bravo-prod").api_key
    return w


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def entries(**filters) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(**filters).order_by("created", "id"))


def test_portal_key_create_and_revoke(world):
    alice = client_for(world.alice)
    alice.post("/keys/new/", {"name": "ci", "monthly_limit": "12.50", "rpm": "60"})
    key = ApiKey.objects.get(name="ci")
    alice.post(f"/keys/{key.pk}/revoke/")
    created, revoked = entries(target_type="api_key", target_id=str(key.pk))
    assert (created.action, created.source, created.actor, created.team) == ("key.create", "portal", world.alice,
                                                                               world.alpha)
    assert created.after["monthly_limit"] == "12.5" and created.after["rpm_limit"] == 60
    assert "key_hash" not in created.after and key.prefix in created.target
    assert revoked.action == "key.revoke" and revoked.before == {"revoked_at": None} and revoked.after["revoked_at"]
    assert revoked.ip == "127.0.0.1"


def test_limit_edits_in_the_admin(world):
    root = client_for(world.root)
    response = root.post(f"/admin/accounts/apikey/{world.key_a.pk}/change/", {
        "team": world.alpha.pk, "kind": "inference", "name": "alpha-prod", "allowed_models": "[]", "rpm_limit": "30",
        "tpm_limit": "", "monthly_limit": "7.50", "limit_reset": "", "metadata": "{}", "expires_at_0": "",
        "expires_at_1": "",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    entry = entries(action="key.update")[-1]
    assert entry.source == "admin" and entry.actor == world.root and entry.team == world.alpha
    assert entry.before == {"rpm_limit": None, "monthly_limit": None}
    assert entry.after == {"rpm_limit": 30, "monthly_limit": "7.5"}


def test_prices_and_models_in_the_admin(world):
    root = client_for(world.root)
    model = Model.objects.get(public_id="claude-haiku-4-5")
    response = root.post("/admin/billing/price/add/", {
        "model": model.pk, "effective_from_0": "2031-01-01", "effective_from_1": "00:00:00",
        "input_per_mtok": "0.90", "output_per_mtok": "4.50", "cache_write_5m_multiplier": "1.25",
        "cache_write_1h_multiplier": "2", "cache_read_multiplier": "0.1",
    })
    assert response.status_code == 302
    price = Price.objects.get(model=model, effective_from=datetime(2031, 1, 1, tzinfo=UTC))
    entry = entries(action="price.create")[-1]
    assert entry.source == "admin" and entry.actor == world.root and entry.target_id == str(price.pk)
    assert entry.after["input_per_mtok"] == "0.9" and entry.team is None  # global: staff only
    model.enabled = False
    with audit_context("admin", user=world.root):
        model.save()
    entry = entries(action="model.update")[-1]
    assert entry.before == {"enabled": True} and entry.after == {"enabled": False}


def test_commands_are_logged_as_commands(world):
    call_command("issue_key", "--team", "alpha", "--name", "from-cli", "--monthly-limit", "3")
    key = ApiKey.objects.get(name="from-cli")
    call_command("revoke_key", key.prefix)
    call_command("add_credit", "--team", "alpha", "--amount", "5", "--note", "po-1", "--prepaid")
    by_action = {e.action: e for e in entries(team=world.alpha, source="command")}
    assert {"key.create", "key.revoke", "credit.add", "team.update"} <= set(by_action)
    assert by_action["key.revoke"].actor_label == "manage.py revoke_key" and by_action["key.revoke"].actor is None
    assert by_action["credit.add"].after == {"amount": "5", "kind": "topup", "note": "po-1"}
    assert by_action["team.update"].after == {"prepaid": True}


def test_budget_and_status_changes(world):
    with audit_context("api", user=world.root, ip="203.0.113.9"):
        set_team_budget(world.bravo, Decimal("40"))
        set_team_suspended(world.bravo, True)
        set_team_suspended(world.bravo, True)  # no change, no entry
        set_team_suspended(world.bravo, False)
    with pytest.raises(ValueError):
        set_team_budget(world.bravo, Decimal("0.005"))  # budgets are whole cents: never rounded quietly
    actions = [(e.action, e.source, e.ip) for e in entries(team=world.bravo, action__startswith="team.")][-3:]
    assert actions == [("team.budget", "api", "203.0.113.9"), ("team.suspend", "api", "203.0.113.9"),
                       ("team.resume", "api", "203.0.113.9")]


def test_saves_that_change_nothing_audited_are_not_logged(world):
    before = AuditEntry.objects.count()
    ApiKey.objects.filter(pk=world.key_a.pk).update(last_used=datetime.now(UTC))  # the gateway's touch
    world.key_a.refresh_from_db()
    world.key_a.save(update_fields=["last_used"])
    world.key_a.save()
    assert AuditEntry.objects.count() == before


def test_management_api_changes_are_logged_with_the_key_and_source_api(world):
    from tokenhub_portal.web.services import issue_key

    assert request_source("/api/v1/keys") == "api" and request_source("/v1/keys/x") == "api"
    assert request_source("/admin/accounts/") == "admin" and request_source("/keys/") == "portal"
    manager = issue_key(world.alpha, name="terraform", kind=ApiKey.Kind.MANAGEMENT)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {manager.plaintext}", REMOTE_ADDR="198.51.100.7")
    assert client.patch(f"/api/v1/keys/{world.key_a.key_hash}", {"limit": "9.50"},
                        content_type="application/json").status_code == 200
    assert client.patch("/api/v1/team", {"budget": "75"}, content_type="application/json").status_code == 200
    assert client.delete(f"/api/v1/keys/{world.key_a.key_hash}").status_code == 200
    label = f"key {manager.api_key.prefix}… (terraform)"
    by_action = {e.action: e for e in entries(team=world.alpha, source="api")}
    assert {"key.update", "team.budget", "key.revoke"} <= set(by_action)
    for entry in by_action.values():
        assert (entry.actor, entry.actor_label, entry.ip) == (None, label, "198.51.100.7")
    assert by_action["key.update"].after["monthly_limit"] == "9.5"
    # A staff session on the API is attributed to the staff user.
    staff = client_for(world.root)
    assert staff.patch(f"/api/v1/teams/{world.bravo.pk}", {"suspended": True},
                       content_type="application/json").status_code == 200
    entry = entries(team=world.bravo, action="team.suspend")[-1]
    assert (entry.source, entry.actor, entry.actor_label) == ("api", world.root, "root")


def test_outside_any_context_it_is_the_system(world):
    entry = record("team.update", target_type="team", target_id=world.alpha.pk, team=world.alpha, after={"x": 1})
    assert entry.source == "system" and entry.actor is None and entry.actor_label == ""


# --- who sees what ------------------------------------------------------------------------------

def test_team_admins_see_their_own_teams_log_only(world):
    revoke_key(world.key_a)
    revoke_key(world.key_b)
    alice = client_for(world.alice).get("/team/audit/").content.decode()
    assert world.key_a.prefix in alice and world.key_b.prefix not in alice and "bravo" not in alice
    bob = client_for(world.bob).get("/team/audit/").content.decode()
    assert world.key_b.prefix in bob and world.key_a.prefix not in bob
    assert client_for(world.mia).get("/team/audit/").status_code == 403  # members: no
    assert Client().get("/team/audit/").status_code == 302


def test_staff_see_everything_and_filter(world):
    revoke_key(world.key_a)
    revoke_key(world.key_b)
    staff = get_user_model().objects.create_user("opal", "opal@example.com", PASSWORD, is_staff=True)
    client = client_for(staff)
    body = client.get("/operator/audit/").content.decode()
    assert world.key_a.prefix in body and world.key_b.prefix in body
    body = client.get(f"/operator/audit/?team={world.bravo.pk}&action=key.revoke").content.decode()
    assert world.key_b.prefix in body and world.key_a.prefix not in body
    assert client.get("/operator/audit/?team=abc&source=nope&cursor=zzz").status_code == 200
    assert client_for(world.alice).get("/operator/audit/").status_code == 403
    root = client_for(world.root)
    assert root.get("/admin/accounts/auditentry/").status_code == 200
    assert root.get("/admin/accounts/auditentry/add/").status_code == 403


def test_audit_log_pages_by_keyset(world):
    for i in range(60):
        record("team.update", target_type="team", target_id=i, target=f"entry-{i:03d}", team=world.alpha)
    client = client_for(world.alice)
    first = client.get("/team/audit/").content.decode()
    assert "entry-059" in first and "Older" in first
    import re

    cursor = re.search(r'href="\?cursor=([^"]+)">Older', first).group(1)
    second = client.get(f"/team/audit/?cursor={cursor}").content.decode()
    assert "entry-000" in second and "entry-059" not in second
