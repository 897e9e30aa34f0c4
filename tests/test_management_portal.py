"""Management keys and limit periods in the portal and the admin: owners/admins create
management keys, the keys page shows each limit's window, staff make operator keys."""
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from billing.services import charge_request
from tokenhub_portal.accounts.keys import hash_key
from tokenhub_portal.accounts.models import ApiKey, Membership, Team

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def member(team, role):
    user = get_user_model().objects.create_user(f"{role}-{team.pk}", f"{role}@example.com", "pw-x-123456")
    Membership.objects.create(team=team, user=user, role=role)
    client = Client()
    client.force_login(user)
    return client


def test_owner_creates_a_management_key_in_the_portal(seeded):
    team = Team.objects.create(name="acme")
    r = member(team, "owner").post("/keys/new/", {"name": "terraform", "kind": "management"})
    assert r.status_code == 200
    body = r.content.decode()
    plaintext = re.search(r'id="new-key">(th-[A-Za-z0-9_-]{40,})<', body).group(1)
    key = ApiKey.objects.get(key_hash=hash_key(plaintext))
    assert key.kind == "management" and key.team == team
    assert "/api/v1/keys" in body and "chat/completions" not in body  # the snippet fits the key
    refused = member(team, "admin").post("/keys/new/", {"name": "x", "kind": "management", "rpm": "5"})
    assert "cannot call models" in refused.content.decode()
    assert member(team, "member").post("/keys/new/", {"name": "y", "kind": "management"}).status_code == 403
    assert ApiKey.objects.filter(kind="management").count() == 1


def test_keys_page_shows_the_limit_window(seeded, make_key, make_record):
    issued = make_key("acme", name="nightly", monthly_limit=Decimal("2.00"), limit_reset="daily")
    charge_request(make_record(issued, created=datetime.now(UTC), input_tokens=1000).pk)  # $0.003 today
    page = member(Team.objects.get(name="acme"), "member").get("/keys/").content.decode()
    row = page[page.index('data-prefix="' + issued.api_key.prefix):]
    row = re.sub(r"<[^>]+>", "", row[:row.index("</tr>")])  # amounts carry their exact value as a tooltip
    assert "/day" in row and "$0.003 used" in row and "resets " in row


def test_portal_creates_a_key_with_a_weekly_limit(seeded):
    team = Team.objects.create(name="acme")
    r = member(team, "admin").post("/keys/new/", {"name": "w", "kind": "inference", "monthly_limit": "7",
                                                  "limit_reset": "weekly"})
    assert r.status_code == 200
    key = ApiKey.objects.get(name="w")
    assert (key.monthly_limit, key.limit_reset, key.kind) == (Decimal("7"), "weekly", "inference")


def test_staff_make_operator_keys_in_the_admin(seeded, client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw-123456-x"))
    r = client.post("/admin/accounts/apikey/add/", {"kind": "inference", "name": "no-team", "allowed_models": "[]",
                                                    "metadata": "{}"})
    assert r.status_code == 200 and "Only management keys can be without a team" in r.content.decode()
    r = client.post("/admin/accounts/apikey/add/", {"kind": "management", "name": "ops", "allowed_models": "[]",
                                                    "metadata": "{}"})
    assert r.status_code == 200
    key = ApiKey.objects.get(name="ops")
    assert key.is_operator and key.key_hash == hash_key(r.context["plaintext"])
